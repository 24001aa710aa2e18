"""Can TensorRT build and time a diffusion denoiser here, and if not, why (without importing it).

Needs: the `trtexec` command (TensorRT's tar/deb packages and NVIDIA's TensorRT/PyTorch containers
ship it; the `tensorrt` pip wheel does not), the onnx package for the export, and an NVIDIA GPU of
a generation with kernels for the precision. The `tensorrt` Python package is reported when present
(its version decides what the ONNX parser reads) but is not required.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from engine import registry, system
from engine.runtimes.base import Availability
from engine.runtimes.tensorrt import commands

BACKEND = "tensorrt"
INSTALL_HINT = ("install TensorRT with its trtexec tool on a Linux machine with an NVIDIA GPU, e.g. NVIDIA's "
                "TensorRT container or the TensorRT tar package with its bin/ on PATH (see docs/tensorrt.md)")
# Oldest GPU generation whose TensorRT kernels run each precision (INT8 tensor cores from Turing,
# BF16 from Ampere, FP8 from Ada; modelopt's diffusers guide: FP8 engines on Ada/Hopper).
MIN_GENERATION = {"fp16": "volta", "bf16": "ampere", "int8_sq": "turing", "fp8": "ada"}
# Oldest TensorRT whose ONNX parser reads modelopt's Q/DQ export (modelopt's diffusers guide).
MIN_TENSORRT = {"int8_sq": (9, 2), "fp8": (10, 2)}


def tensorrt_python_version() -> str | None:
    return system.package_version("tensorrt", "tensorrt-cu12", "tensorrt-cu13")


def onnx_installed() -> bool:
    return importlib.util.find_spec("onnx") is not None


def probe_gpu() -> dict[str, Any] | None:
    return system.probe_nvidia_gpu(0)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


def runs_precision(precision: str) -> str | None:
    """None if this backend builds `precision` at all, else why not (no GPU needed to say so)."""
    prec = registry.precision(precision)
    if BACKEND not in prec.kernels or "diffusion" not in prec.model_kinds:
        names = ", ".join(p.name for p in registry.PRECISIONS.values() if BACKEND in p.kernels)
        return (f"the TensorRT backend builds diffusion denoisers in {names}; {prec.label} is not one of them "
                "(language models run on TensorRT through the tensorrt_llm backend).")
    return None


def check(precision: str = "bf16", sparsity: str = "none", device: str = "auto",
          probe: Callable[[], dict[str, Any] | None] = probe_gpu) -> Availability:
    """Availability of this backend for one recipe; the GPU is probed only once the cheap checks pass."""
    why = runs_precision(precision)
    if why:
        return Availability(False, f"TensorRT: {why}")
    if registry.sparsity(sparsity).pattern is not None:
        return Availability(False, "TensorRT: sparse denoisers are not built by this backend; use sparsity 'none'.")
    missing = []  # everything this machine lacks, so one refusal says it all
    if device.startswith("cpu"):
        missing.append("TensorRT runs on NVIDIA GPUs only and this sweep runs on the CPU (choose the PyTorch "
                       "runtime, or device auto/cuda on a GPU machine)")
    if commands.trtexec_executable() is None:
        py = tensorrt_python_version()
        extra = f" (the tensorrt Python package {py} is installed, but its wheel has no trtexec)" if py else ""
        missing.append(f"the trtexec command is not on PATH{extra}; {INSTALL_HINT}")
    if not onnx_installed():
        missing.append("the onnx package is missing (the denoiser is exported to ONNX first); "
                       "pip install 'tradeoff-lab[diffusion]'")
    if missing:
        return Availability(False, "TensorRT: " + "; and ".join(missing) + ".")
    gpu = probe()
    if gpu is None:
        return Availability(False, "TensorRT: no NVIDIA GPU found (TensorRT engines run only on NVIDIA GPUs).")
    cc = gpu.get("compute_capability")
    if cc:
        gen = registry.generation_of(tuple(cc))
        need = MIN_GENERATION.get(precision, "volta")
        if registry.GENERATIONS[gen] < registry.GENERATIONS[need]:
            label = registry.precision(precision).label
            cc_need = ".".join(map(str, registry.GENERATIONS[need]))
            return Availability(False, f"TensorRT on {gpu.get('name', 'this GPU')}: {label} engines need a GPU of "
                                       f"the {need.capitalize()} generation or newer (compute capability {cc_need}+); "
                                       f"this is {gen.capitalize()}.")
    py = tensorrt_python_version()
    need_trt = MIN_TENSORRT.get(precision)
    if py and need_trt and _version_tuple(py) < need_trt:
        return Availability(False, f"TensorRT {py} cannot read modelopt's {registry.precision(precision).label} "
                                   f"ONNX; it needs TensorRT {'.'.join(map(str, need_trt))} or newer.")
    return Availability(True, "")


def refusal(reason: str) -> str:
    """The one sentence a sweep stops with before any work when TensorRT was chosen but cannot run."""
    return f"TensorRT cannot run here: {reason.removeprefix('TensorRT: ')}"
