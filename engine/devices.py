"""What this machine can run: the device (CPU, or each NVIDIA GPU) and which engines work here.

Used by the app's sidebar and the Experiment page. Cheap: nothing heavy is imported to list engines
(package versions come from metadata); only `precision_choices(..., speed=True)` asks the runtime
backends, which may import torch.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine import registry
from engine.system import package_version



@dataclass(frozen=True)
class EngineCheck:
    name: str
    ok: bool
    reason: str  # one line: what it found, or what is missing and how to get it
    version: str | None = None


@dataclass(frozen=True)
class PrecisionChoice:
    name: str
    label: str
    runnable: bool  # can this device calibrate it and measure its accuracy
    reason: str  # why not, when not runnable
    speed_ok: bool | None = None  # can the chosen backend time it here (None: not asked)
    speed_reason: str = ""


def torch_is_cpu_only() -> bool:
    """True when the installed torch wheel is a CPU-only build (its version says so: '2.x+cpu')."""
    version = package_version("torch") or ""
    return version.endswith("+cpu")


def detect_gpus(probe: Callable[[int], dict | None] | None = None, max_gpus: int = 16) -> list[dict[str, Any]]:
    """One dict per NVIDIA GPU (name, memory_mb, compute_capability, generation, ...); [] on a CPU machine."""
    if probe is None:
        from engine.system import probe_nvidia_gpu as probe

        if shutil.which("nvidia-smi") is None and torch_is_cpu_only():
            return []  # neither the driver tool nor a CUDA torch: no need to import torch to know
    gpus = []
    for index in range(max_gpus):
        info = probe(index)
        if info is None:
            break
        gpus.append(info)
    return gpus


def cpu_label() -> str:
    name = platform.processor() or platform.machine() or "CPU"
    return f"CPU ({name}, {os.cpu_count() or '?'} cores)"


def gpu_label(gpu: dict[str, Any]) -> str:
    memory = gpu.get("memory_mb")
    mem = f", {memory / 1024:.0f} GiB" if memory else ""
    cc = gpu.get("compute_capability")
    arch = f", {str(gpu.get('generation', '')).capitalize()} sm{cc[0]}{cc[1]}" if cc else ""
    return f"GPU {gpu.get('index', 0)}: {gpu.get('name', 'NVIDIA GPU')}{mem}{arch}"


def device_name(gpus: list[dict[str, Any]]) -> str:
    """Short name of the device results are measured on here ('cpu' or the first GPU's name)."""
    return gpus[0].get("name", "cuda") if gpus else "cpu"


def engine_checks(gpus: list[dict[str, Any]]) -> list[EngineCheck]:
    """modelopt, TensorRT-LLM, TensorRT and CUDA: available here or not, each with a one-line reason."""
    checks = []
    modelopt = package_version("nvidia-modelopt")
    checks.append(EngineCheck("modelopt", bool(modelopt),
                              f"calibrates on {'GPU and CPU' if gpus else 'CPU (no GPU here)'}" if modelopt
                              else "not installed: pip install nvidia-modelopt", modelopt))

    trtllm_version = package_version("tensorrt_llm", "tensorrt-llm")
    from engine.runtimes.tensorrt_llm.availability import check as trtllm_check

    avail = trtllm_check("bf16", "none", probe=lambda: gpus[0] if gpus else None)
    checks.append(EngineCheck("TensorRT-LLM", avail.ok, "benchmarks on this GPU" if avail.ok else avail.reason,
                              trtllm_version))

    trt_version = package_version("tensorrt", "tensorrt-cu12", "tensorrt_cu12")
    if importlib.util.find_spec("tensorrt") is None and trt_version is None:
        trt = EngineCheck("TensorRT", False, "not installed (pip install tensorrt; needs an NVIDIA GPU)")
    elif not gpus:
        trt = EngineCheck("TensorRT", False, f"installed ({trt_version}) but there is no NVIDIA GPU here",
                          trt_version)
    else:
        trt = EngineCheck("TensorRT", True, "installed", trt_version)
    checks.append(trt)

    torch_version = package_version("torch")
    if not gpus:
        cuda = EngineCheck("CUDA", False, "no NVIDIA GPU found (nvidia-smi absent or it lists none); "
                                          "runs use the CPU", torch_version)
    elif torch_is_cpu_only():
        cuda = EngineCheck("CUDA", False, f"a GPU is present but torch {torch_version} is a CPU-only build; "
                                          "install a CUDA build of torch", torch_version)
    else:
        driver = gpus[0].get("driver")
        cuda = EngineCheck("CUDA", True, f"{len(gpus)} GPU(s)" + (f", driver {driver}" if driver else ""),
                           torch_version)
    checks.append(cuda)
    return checks


def precision_choices(gpus: list[dict[str, Any]], backend: str | None = None,
                      sparsity: str = "none") -> list[PrecisionChoice]:
    """Every precision with whether this device can calibrate and evaluate it (and, when `backend`
    is given, whether that backend can time it here, and why not)."""
    out = []
    for prec in registry.PRECISIONS.values():
        runnable, reason = True, ""
        if prec.cuda_only_calibration and not gpus:
            runnable = False
            reason = (f"{prec.label} needs an NVIDIA GPU: modelopt's FP4 quantizer runs only on CUDA, and this "
                      "machine has none. The GPU Selector page estimates its speed.")
        speed_ok, speed_reason = None, ""
        if backend is not None and runnable:
            speed_ok, speed_reason = speed_availability(prec.name, backend, sparsity)
        out.append(PrecisionChoice(prec.name, prec.label, runnable, reason, speed_ok, speed_reason))
    return out


def speed_availability(precision: str, backend: str, sparsity: str = "none") -> tuple[bool, str]:
    """Can `backend` (a registry.BACKENDS name or alias) time this recipe here; the reason when not."""
    from engine.runtimes import get_runtime

    try:
        avail = get_runtime(backend).availability(precision, sparsity)
    except ImportError as exc:
        return False, f"The {backend} backend cannot load here: {exc}"
    return avail.ok, avail.reason
