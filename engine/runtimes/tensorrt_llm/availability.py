"""Can TensorRT-LLM benchmark a recipe on this machine, and if not, why (without importing it)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any

from engine import registry, system
from engine.runtimes.base import Availability
from engine.runtimes.tensorrt_llm import commands
from engine.runtimes.tensorrt_llm.export import flow_for

INSTALL_HINT = ("pip install tensorrt_llm on a Linux machine with an NVIDIA GPU "
                "(see docs/tensorrt_llm.md)")
LEGACY_HINT = ("a TensorRT-LLM release that still ships trtllm-build and the 'tensorrt' backend of "
               "trtllm-bench (1.0 to 1.2.x, i.e. 1.2.x or older but new enough for '--backend tensorrt'; "
               "the legacy engine flow was removed during 1.3 development), "
               "e.g. pip install 'tensorrt_llm>=1.0,<1.3'")


def tensorrt_llm_installed() -> bool:
    return importlib.util.find_spec("tensorrt_llm") is not None


def probe_gpu() -> dict[str, Any] | None:
    return system.probe_nvidia_gpu(0)


def check(precision: str = "bf16", sparsity: str = "none",
          probe: Callable[[], dict[str, Any] | None] = probe_gpu) -> Availability:
    """Availability of the TensorRT-LLM backend for one recipe. The GPU is probed only once the
    cheap checks pass, so listing backends on a machine without TensorRT-LLM imports nothing."""
    prec = registry.precision(precision)
    registry.sparsity(sparsity)
    # An explicit TLAB_TRTLLM_BENCH (a container wrapper, or the tests' stand-in) counts as installed.
    if not tensorrt_llm_installed() and not os.environ.get(commands.BENCH_ENV):
        return Availability(False, f"TensorRT-LLM: not installed; {INSTALL_HINT}.")
    if commands.bench_executable() is None:
        return Availability(False, "TensorRT-LLM is installed but the trtllm-bench command is not on PATH; "
                                   "run from the environment where tensorrt_llm was installed.")
    gpu = probe()
    if gpu is None:
        return Availability(False, "TensorRT-LLM: no NVIDIA GPU found (it runs only on NVIDIA GPUs).")
    cc = gpu.get("compute_capability")
    if cc:
        why = registry.why_not_on_generation(prec, registry.generation_of(tuple(cc)))
        if why:
            return Availability(False, f"TensorRT-LLM on {gpu.get('name', 'this GPU')}: {why}")
    if flow_for(precision, sparsity) == "engine" and commands.build_executable() is None:
        what = registry.precision(precision).label if sparsity == "none" else \
            f"{prec.label} with {registry.sparsity(sparsity).label} sparsity"
        installed = system.package_version("tensorrt_llm") or "not installed"
        return Availability(False, f"{what} needs a TensorRT engine built by trtllm-build, which this "
                                   f"TensorRT-LLM ({installed}) does not have; it needs {LEGACY_HINT}.")
    return Availability(True, "")
