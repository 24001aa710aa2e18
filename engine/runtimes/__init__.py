"""Runtime backends behind one interface (see `base.Runtime`), one package each: `torch/`,
`tensorrt_llm/`.

Backends are registered by import path in engine.registry.BACKENDS and loaded on first use, so
listing them (the app's sidebar) never imports torch or TensorRT-LLM.
"""

from __future__ import annotations

import importlib

from engine import registry
from engine.runtimes.base import (  # noqa: F401  (re-exported: the public interface)
    Availability,
    Capabilities,
    Measurement,
    Runtime,
    relative_spread,
    speedup,
    summarize_runs,
)


def get_runtime(name: str, device: str = "auto") -> Runtime:
    """The backend registered as `name` (or an alias such as "pytorch"), for `device`."""
    module, cls = registry.backend(name).runtime.split(":")
    return getattr(importlib.import_module(module), cls)(device=device)


def available_runtimes(precision: str = "bf16", sparsity: str = "none") -> dict[str, Availability]:
    """Each backend with whether it can run that recipe here, and why not."""
    out: dict[str, Availability] = {}
    for name, b in registry.BACKENDS.items():
        try:
            rt = get_runtime(name)
        except ImportError as exc:  # a backend module not present in this install
            out[name] = Availability(False, f"{b.label} backend unavailable: {exc}")
            continue
        out[name] = rt.availability(precision, sparsity)
    return out
