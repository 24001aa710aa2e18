"""Job functions are named "module:function" and must live in an allowed module.

A job function takes (payload: dict, progress) where `progress(fraction, stage, log=None)` reports
progress; it returns the ids of the results it saved (a list of str) or None. Which names are allowed:
engine.store.job_functions.
"""

import importlib
from collections.abc import Callable

from engine.errors import TlabError
from engine.store.job_functions import check_job_fn


def resolve_job_fn(fn: str) -> Callable:
    """Import and return the function named by `fn` (checked against the allow-list first)."""
    module_name, func_name = check_job_fn(fn).split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise TlabError(f"Job function {fn}: module {module_name} cannot be imported ({e}).") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise TlabError(f"Job function {fn}: {module_name} has no function {func_name}.")
    return func
