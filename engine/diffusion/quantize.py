"""Quantize a diffusion denoiser (UNet) with NVIDIA Model Optimizer, calibrated on the denoiser's own
inputs over every sampling step.

As modelopt's diffusers example does (examples/diffusers/quantization): the recipe's config
(INT8 SmoothQuant or FP8) on the convolutions and linear layers, with the layers that take or give
the model's raw input and output, the time embedding and the shortcut convolutions kept in high
precision. Calibration data is what the baseline sampler feeds the denoiser at every timestep:
a list of (sample, timestep, condition), collected by `calibration_inputs` (the bundled model) or
`record_inputs` (any sampler); the condition is the class labels of a class-conditional UNet or the
text encoder's hidden states of a text-to-image one.

modelopt's SmoothQuant smooths linear layers only; convolutions get INT8 per-output-channel
weights and a per-tensor INT8 activation scale (max calibration), which is what a real INT8
convolution kernel takes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from engine import registry

Progress = Callable[[float, str], None]
CalibInput = tuple[torch.Tensor, torch.Tensor, Any]  # (sample, timestep, condition: engine.diffusion.conditions)
DenoiserCall = Callable[[nn.Module, torch.Tensor, torch.Tensor, Any], Any]  # (unet, sample, t, condition)


def call_with_labels(unet: nn.Module, x: torch.Tensor, t: torch.Tensor, y: Any) -> Any:
    return unet(x, t, class_labels=y)

# Kept in high precision, as modelopt's diffusers example does (its filter_func_default).
HIGH_PRECISION_LAYERS = ("*conv_in*", "*conv_out*", "*time_embedding*", "*time_emb_proj*", "*conv_shortcut*",
                         "*class_embedding*", "*add_embedding*")
CALIB_BATCH = 16  # denoiser calls per calibration forward (sample rows)
# FP8 attention (modelopt's diffusers plugin quantizes diffusers' Attention): as the example's FP8 config.
FP8_ATTENTION_QUANTIZERS = ("*[qkv]_bmm_quantizer", "*softmax_quantizer")
# INT8 convolution inputs: the range over the first STEP_PERCENTILE of the steps, by STEP_METHOD. Measured on
# the bundled model (64 images, 20 steps; PSNR vs float32, task metric 95.3% unquantized): plain max 45.5 dB,
# 95.3%; "mean-max" 51.4 dB, 95.3%; "min-mean" 28.3 dB, 85.9%; "global_min" 27.5 dB, 82.8% (they clip).
STEP_PERCENTILE, STEP_METHOD = 1.0, "mean-max"

# Test hook: precision name -> a modelopt config used instead of the registry's (a deliberately
# broken recipe in the tests). Empty in normal use.
CONFIG_OVERRIDES: dict[str, dict] = {}


def modelopt_config(precision: str, unet: nn.Module | None = None) -> dict | None:
    """The modelopt config of a diffusion recipe: the registry's, with the high-precision layers off
    (None for an unquantized precision); as modelopt's diffusers example does, FP8 also quantizes
    attention (the q/k/v inputs of its matmuls and its softmax), and INT8 calibrates each convolution's
    input over the denoising steps (`unet`'s convolutions; engine/diffusion/step_calibration.py)."""
    import modelopt.torch.quantization as mtq

    if precision in CONFIG_OVERRIDES:
        return copy.deepcopy(CONFIG_OVERRIDES[precision])
    prec = registry.precision(precision)
    if prec.modelopt_cfg is None:
        return None
    cfg = copy.deepcopy(getattr(mtq, prec.modelopt_cfg))
    if precision == "fp8":
        cfg = with_quantizers(cfg, {p: {"num_bits": (4, 3), "axis": None} for p in FP8_ATTENTION_QUANTIZERS})
    if precision == "int8_sq" and unet is not None:
        from engine.diffusion.step_calibration import StepRangeCalibrator

        calibrator = (StepRangeCalibrator, (), {"percentile": STEP_PERCENTILE, "method": STEP_METHOD})
        final = with_layers_disabled(cfg, HIGH_PRECISION_LAYERS)
        convs = [f"{name}.input_quantizer" for name, m in unet.named_modules()
                 if isinstance(m, nn.Conv2d) and enabled_by(final, f"{name}.input_quantizer")]
        cfg = with_quantizers(cfg, {q: {"num_bits": 8, "axis": None, "calibrator": calibrator} for q in convs})
    return with_layers_disabled(cfg, HIGH_PRECISION_LAYERS)


def enabled_by(cfg: dict, quantizer: str, parent_class: str = "nn.Conv2d") -> bool:
    """Whether `cfg` (list form: later entries win) leaves the quantizer named `quantizer`, of a module of
    `parent_class`, on (an entry naming another parent class does not apply to it)."""
    from fnmatch import fnmatch

    entries = cfg["quant_cfg"] if isinstance(cfg["quant_cfg"], list) else [
        {"quantizer_name": k, **({"enable": v["enable"]} if "enable" in v and len(v) == 1 else {"cfg": v})}
        for k, v in cfg["quant_cfg"].items()]
    on = False
    for e in entries:
        if fnmatch(quantizer, e.get("quantizer_name", "")) and e.get("parent_class", parent_class) == parent_class:
            on = e["enable"] if "enable" in e else bool((e.get("cfg") or {}).get("enable", True))
    return on


def with_quantizers(cfg: dict, quantizers: dict[str, dict]) -> dict:
    """`cfg` with these quantizer settings added after its own (so they win over its wildcards)."""
    cfg = copy.deepcopy(cfg)
    if isinstance(cfg["quant_cfg"], list):
        cfg["quant_cfg"].extend({"quantizer_name": name, "cfg": q} for name, q in quantizers.items())
    else:
        cfg["quant_cfg"].update(quantizers)
    return cfg


def with_layers_disabled(cfg: dict, patterns: Sequence[str]) -> dict:
    """`cfg` with the quantizers of layers matching `patterns` disabled (the list or dict form)."""
    cfg = copy.deepcopy(cfg)
    quant_cfg = cfg["quant_cfg"]
    if isinstance(quant_cfg, list):
        quant_cfg.extend({"quantizer_name": p, "enable": False} for p in patterns)
    else:
        quant_cfg.update({p: {"enable": False} for p in patterns})
    return cfg


@torch.no_grad()
def record_inputs(unet: nn.Module, run: Callable[[], Any], condition: str = "class_labels") -> list[CalibInput]:
    """Call `run()` (a sampler using `unet`) and record what the denoiser is fed at every call: one
    (sample, timestep, condition) each, the condition being the keyword argument named `condition`
    (engine.diffusion.conditions: a dict where the UNet also takes added conditions)."""
    seen: list[CalibInput] = []

    from engine.diffusion import conditions

    def hook(module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        y = conditions.from_unet_kwargs(kwargs, condition)  # with SDXL's added conditions, a dict
        seen.append((sample.detach().clone(), torch.as_tensor(t).detach().clone(), conditions.detach_clone(y)))

    handle = unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return seen


def calibration_inputs(unet: nn.Module, scheduler: Any, labels: Sequence[int], steps: int, seed: int,
                       guidance_scale: float | None = None) -> list[CalibInput]:
    """Run the bundled sampler for one image per label and record what the denoiser is fed at
    every step: one (sample, timestep, class labels) per step, sample rows = the images (twice with
    guidance: conditional and unconditional)."""
    from engine.diffusion.bundled import generate

    return record_inputs(unet, lambda: generate(unet, scheduler, labels, steps=steps, seed=seed,
                                                guidance_scale=guidance_scale, batch_size=CALIB_BATCH))


def quantize(unet: nn.Module, precision: str, calib: list[CalibInput], progress: Progress | None = None,
             call: DenoiserCall = call_with_labels) -> nn.Module:
    """A quantized copy of `unet` (the original is left as it was), calibrated on `calib`, each entry
    fed through `call` (class labels by default; a text-to-image UNet takes encoder hidden states)."""
    import modelopt.torch.quantization as mtq

    from engine.diffusion.step_calibration import at_step

    progress = progress or (lambda f, s: None)
    cfg = modelopt_config(precision, unet)
    model = copy.deepcopy(unet)
    if cfg is None:
        return model
    label = registry.precision(precision).label

    def forward_loop(m):
        with torch.no_grad():
            for i, (x, t, y) in enumerate(calib):
                with at_step(t):
                    call(m, x, t, y)
                progress((i + 1) / len(calib), f"calibrating {label}")

    return mtq.quantize(model, cfg, forward_loop).eval()
