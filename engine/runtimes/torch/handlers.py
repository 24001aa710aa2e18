"""One handler per quantized precision the PyTorch runtime runs on real kernels (torchao's config ->
handler pattern).

A precision's registry entry says where the PyTorch runtime runs it (`kernels["torch"]`: device
kinds); its handler here says how: which kernel layer replaces a calibrated linear layer, what this
machine must have for it, and the oldest CUDA GPU it runs on. Baselines (no quantization) need none.
Adding a precision to this backend is one `register(...)` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from engine.errors import UnsupportedOnDevice
from engine.runtimes.torch import kernels
from engine.runtimes.torch import weights as tw


@dataclass(frozen=True)
class DeployOptions:
    int8_activations: str = "static"  # "static" (calibrated scale) or "dynamic" (per-call scale)


# (calibrated linear, its name, device, options) -> the kernel layer that replaces it
BuildLayer = Callable[[nn.Module, str, torch.device, DeployOptions], nn.Module]
# device kind ("cpu"/"cuda") -> None when this machine has what the kernel needs, else why not
CheckMachine = Callable[[str], "str | None"]


@dataclass(frozen=True)
class KernelHandler:
    build: BuildLayer
    layer_types: tuple[type, ...]  # the layers `build` makes (engine.runtimes.torch.deploy.describe)
    check: CheckMachine = lambda device_kind: None
    min_cuda_capability: tuple[int, int] = (8, 0)


HANDLERS: dict[str, KernelHandler] = {}


def register(precision: str, handler: KernelHandler) -> None:
    HANDLERS[precision] = handler


def handler(precision: str) -> KernelHandler | None:
    return HANDLERS.get(precision)


def _bias(module: nn.Module):
    return module.bias.detach() if getattr(module, "bias", None) is not None else None


# --- INT8 SmoothQuant (W8A8): fbgemm on CPU ----------------------------------------------------

def _int8_layer(module, name, device, options):
    w = tw.int_weights(module)
    tw.check_matches_modelopt(module, w, name)
    return kernels.Int8Linear(w, _bias(module), tw.pre_quant_scale(module), tw.static_input_amax(module),
                              options.int8_activations)


def _int8_check(device_kind: str) -> str | None:
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        return "This PyTorch build has no fbgemm INT8 kernels"
    return kernels.int8_probe_exact()


# --- INT4 AWQ (W4A16): int4pack on CPU, tinygemm on CUDA ---------------------------------------

def _int4_layer(module, name, device, options):
    if module.input_quantizer.is_enabled:
        raise UnsupportedOnDevice(f"'{name}' quantizes its activations; INT4 AWQ is weight-only.")
    w = tw.int_weights(module)
    tw.check_matches_modelopt(module, w, name)
    return kernels.Int4Linear(w, _bias(module), tw.pre_quant_scale(module), device)


def _int4_check(device_kind: str) -> str | None:
    if device_kind == "cpu" and not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
        return (f"torch {torch.__version__} has no CPU INT4 kernel (_weight_int4pack_mm_for_cpu, torch 2.6+); "
                "upgrade torch")
    return None


# --- FP8 (W8A8, E4M3 per tensor): torch._scaled_mm on CUDA -------------------------------------

def _fp8_layer(module, name, device, options):
    wq, iq = module.weight_quantizer, module.input_quantizer
    if wq.amax is None or wq.amax.numel() != 1 or iq.amax is None or iq.amax.numel() != 1:
        raise UnsupportedOnDevice(f"'{name}': FP8 deployment needs per-tensor weight and input amax.")
    return kernels.Fp8Linear(module.weight.detach(), _bias(module), wq.amax, iq.amax,
                             tw.pre_quant_scale(module), device)


register("int8_sq", KernelHandler(_int8_layer, (kernels.Int8Linear,), _int8_check))
register("int4_awq", KernelHandler(_int4_layer, (kernels.Int4Linear,), _int4_check))
register("fp8", KernelHandler(_fp8_layer, (kernels.Fp8Linear,), min_cuda_capability=(8, 9)))
