"""Job functions are named "module:function" and must live in an allowed module.

A job function takes (payload: dict, progress) where `progress(fraction, stage, log=None)` reports
progress; it returns the ids of the results it saved (a list of str) or None. The allow-list keeps a
job row from naming arbitrary code: "engine" always, plus the comma-separated TLAB_JOB_MODULES.
"""

import importlib
import os
import re
from collections.abc import Callable

from engine.errors import TlabError

_NAME = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def allowed_prefixes() -> list[str]:
    extra = os.environ.get("TLAB_JOB_MODULES", "")
    return ["engine"] + [p.strip().rstrip(".") for p in extra.split(",") if p.strip().rstrip(".")]


def check_job_fn(fn: str) -> str:
    """Return `fn` if it is a well-formed, allowed "module:function" name; else raise TlabError."""
    if not isinstance(fn, str) or not _NAME.match(fn):
        raise TlabError(f"Job function {fn!r} must be written 'package.module:function', "
                        "e.g. 'engine.pipeline:run_sweep_job'.")
    module = fn.split(":", 1)[0]
    prefixes = allowed_prefixes()
    if not any(module == p or module.startswith(p + ".") for p in prefixes):
        raise TlabError(f"Job function {fn} is not in an allowed module ({', '.join(prefixes)}). "
                        "Add its package to TLAB_JOB_MODULES (comma-separated) to allow it.")
    return fn


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
