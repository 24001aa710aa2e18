"""Runtime backends behind one interface (see `base.Runtime`).

Backends are named here by import path and loaded on first use, so listing them (the app's
sidebar) never imports torch or TensorRT-LLM.
"""

from __future__ import annotations

import importlib

from engine.names import check_name
from engine.runtimes.base import (  # noqa: F401  (re-exported: the public interface)
    Availability,
    Measurement,
    Runtime,
    relative_spread,
    speedup,
    summarize_runs,
)

# name -> "module:class"; the class takes no arguments.
RUNTIMES: dict[str, str] = {
    "torch": "engine.runtimes.torch_runtime:TorchRuntime",
    "tensorrt_llm": "engine.runtimes.tensorrt_llm:TensorRTLLMRuntime",
}

LABELS = {"torch": "PyTorch", "tensorrt_llm": "TensorRT-LLM"}


def get_runtime(name: str) -> Runtime:
    module, cls = RUNTIMES[check_name("runtime backend", name, RUNTIMES)].split(":")
    return getattr(importlib.import_module(module), cls)()


def available_runtimes(precision: str = "bf16", sparsity: str = "none") -> dict[str, Availability]:
    """Each backend with whether it can run that recipe here, and why not."""
    out: dict[str, Availability] = {}
    for name in RUNTIMES:
        try:
            rt = get_runtime(name)
        except ImportError as exc:  # a backend module not present in this install
            out[name] = Availability(False, f"{LABELS.get(name, name)} backend unavailable: {exc}")
            continue
        out[name] = rt.availability(precision, sparsity)
    return out
