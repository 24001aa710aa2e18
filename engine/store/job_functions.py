"""Which job functions a job row may name: "module:function" in an allowed module.

The allow-list keeps a job row from naming arbitrary code: "engine" always, plus the comma-separated
TLAB_JOB_MODULES. The queue checks a name when a job is enqueued; the worker again before it runs it.
"""

import os
import re

from engine.errors import TlabError

_NAME = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# The engine's own job entry points (allowed by the "engine" prefix; named here so callers share them).
ENGINE_JOB_FUNCTIONS = ("engine.pipeline:run_sweep_job", "engine.training.run:run_training_job")


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
