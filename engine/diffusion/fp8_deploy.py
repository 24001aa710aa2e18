"""Run a modelopt-calibrated FP8 denoiser on real FP8 kernels on an NVIDIA GPU (sm89+), for the speed stage.

`deploy_fp8(baseline, calibrated, device)` is a 16-bit copy of the unquantized UNet in which
- every linear layer modelopt quantizes in FP8 runs `torch._scaled_mm` (engine.runtimes.torch.kernels.
  Fp8Linear: modelopt's per-tensor weight and input scales, its SmoothQuant pre-quant scale if any);
- every LayerNorm whose input modelopt quantizes quantizes and dequantizes it (engine.diffusion.qdq);
- convolutions and attention stay in 16 bits: PyTorch has no FP8 convolution or FP8 attention kernel.
  The speedup therefore covers the FP8 linear layers only (most of a transformer-heavy UNet such as
  SDXL's, little of a convolution-heavy one such as the bundled digits UNet); the quality columns are
  the whole recipe's. The kernel counts say which is which. TensorRT (`--backend tensorrt`) runs the
  convolutions and attention in FP8 too.

The deployed model is checked against the calibrated one with the quantizers of the layers left in
16 bits switched off (the same arithmetic in float32), so the timing is of what the kernels compute.
`half_denoiser(unet, dtype)` is the baseline on the GPU: the same UNet in 16 bits.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from engine.diffusion.conditions import move
from engine.diffusion.qdq import input_format, qdq_layernorm
from engine.errors import UnsupportedOnDevice

DTYPE = torch.bfloat16  # the GPU baseline's and the FP8 kernels' output type
MIN_CAPABILITY = (8, 9)  # torch._scaled_mm's FP8 needs Ada or Hopper (or newer)
MAX_DEPLOY_DIFF = 0.03  # relative output difference the kernels may add to what 16 bits alone change


class CastInputs(nn.Module):
    """`unet` called with its floating-point inputs cast to its own dtype (the samplers feed float32)."""

    def __init__(self, unet: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.unet, self.dtype = unet, dtype

    def forward(self, sample, timestep, *args, **kwargs):
        def cast(v):  # SDXL's added_cond_kwargs come as a dict
            if isinstance(v, dict):
                return {k: cast(u) for k, u in v.items()}
            return v.to(self.dtype) if torch.is_tensor(v) and v.is_floating_point() else v

        return self.unet(cast(sample), timestep, *map(cast, args), **{k: cast(v) for k, v in kwargs.items()})


def half_denoiser(unet: nn.Module, dtype: torch.dtype = DTYPE) -> CastInputs:
    """A 16-bit copy of `unet` that takes float32 inputs: the GPU baseline."""
    return CastInputs(copy.deepcopy(unet).to(dtype).eval(), dtype)


def fp8_unavailable(device: str) -> str | None:
    """None when `device` runs torch._scaled_mm in FP8, else why not (in words)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return f"no FP8 kernels on {dev.type}: torch._scaled_mm's FP8 path is timed on NVIDIA GPUs (sm89+) only"
    cc = torch.cuda.get_device_capability(dev)
    if cc < MIN_CAPABILITY:
        return (f"FP8 kernels need compute capability {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} or newer (Ada, Hopper, "
                f"Blackwell); {torch.cuda.get_device_name(dev)} is {cc[0]}.{cc[1]}")
    return None


def _fp8_linear(module: nn.Module, name: str, device) -> nn.Module:
    from engine.runtimes.torch import weights as tw
    from engine.runtimes.torch.kernels import Fp8Linear

    wq, iq = module.weight_quantizer, module.input_quantizer
    for q, what in ((wq, "weights"), (iq, "inputs")):
        amax = getattr(q, "amax", None)
        if input_format(q, f"{name} {what}") != "fp8" or amax is None or amax.numel() != 1:
            raise UnsupportedOnDevice(f"'{name}': FP8 {what} need one calibrated per-tensor E4M3 scale.")
    return Fp8Linear(module.weight.detach(), module.bias, wq.amax, iq.amax, tw.pre_quant_scale(module), device,
                     out_dtype=DTYPE)


def deploy_fp8(baseline: nn.Module, calibrated: nn.Module, device: str,
               check_device: bool = True) -> tuple[CastInputs, dict[str, int], list[str]]:
    """(the 16-bit baseline with each FP8 linear layer of `calibrated` on torch._scaled_mm and each
    input-quantized LayerNorm quantize-dequantized; layer counts per kind; the names of the enabled
    quantizers left out, i.e. run in 16 bits). `check_device=False` builds it on a device without FP8
    hardware too (torch._scaled_mm also runs on the CPU), for tests; it is never timed there."""
    from modelopt.torch.quantization.nn import TensorQuantizer

    why = fp8_unavailable(device) if check_device else None
    if why:
        raise UnsupportedOnDevice(why)
    deployed = copy.deepcopy(baseline).to(device=device, dtype=DTYPE).eval()
    counts = {"linear_fp8": 0, "layernorm_qdq": 0, "conv_16bit": 0, "attention_16bit": 0, "linear_16bit": 0}
    deployed_quantizers: set[str] = set()
    for name, module in calibrated.named_modules():
        wq, iq = getattr(module, "weight_quantizer", None), getattr(module, "input_quantizer", None)
        if not isinstance(iq, TensorQuantizer):
            continue
        out_q = getattr(module, "output_quantizer", None)
        if out_q is not None and out_q.is_enabled:
            raise UnsupportedOnDevice(f"'{name}' quantizes its output; the FP8 kernels do not.")
        if not isinstance(wq, TensorQuantizer):  # input-only: a LayerNorm
            if iq.is_enabled:
                deployed.set_submodule(name, qdq_layernorm(module, name, "fp8").to(device=device, dtype=DTYPE))
                deployed_quantizers.add(f"{name}.input_quantizer")
                counts["layernorm_qdq"] += 1
            continue
        if not (wq.is_enabled or iq.is_enabled):
            continue
        if isinstance(module, nn.Linear):
            if module.in_features % 16 or module.out_features % 16:
                counts["linear_16bit"] += 1  # torch._scaled_mm needs both sizes divisible by 16
                continue
            if not (wq.is_enabled and iq.is_enabled):
                raise UnsupportedOnDevice(f"'{name}' quantizes only its {'weights' if wq.is_enabled else 'inputs'}; "
                                          "the FP8 kernel takes FP8 weights and activations.")
            deployed.set_submodule(name, _fp8_linear(module, name, device))
            deployed_quantizers.update({f"{name}.weight_quantizer", f"{name}.input_quantizer"})
            counts["linear_fp8"] += 1
        elif isinstance(module, nn.Conv2d):
            counts["conv_16bit"] += 1
    left_out = sorted(n for n, m in calibrated.named_modules()
                      if isinstance(m, TensorQuantizer) and m.is_enabled and n not in deployed_quantizers)
    counts["attention_16bit"] = len({n.rsplit(".", 1)[0] for n in left_out if n.endswith(("_bmm_quantizer",
                                                                                            "softmax_quantizer"))})
    if not counts["linear_fp8"]:
        raise UnsupportedOnDevice("No FP8 linear layer to run on torch._scaled_mm (PyTorch has no FP8 convolution "
                                  "or attention kernel); time this denoiser with TensorRT (--backend tensorrt).")
    return CastInputs(deployed, DTYPE), counts, left_out


@contextlib.contextmanager
def quantizers_off(model: nn.Module, names: list[str]):
    """The named quantizers of `model` disabled inside the block, re-enabled after."""
    modules = [model.get_submodule(n) for n in names]
    for q in modules:
        q.disable()
    try:
        yield model
    finally:
        for q in modules:
            q.enable()


def _rel(got, want) -> float:
    return float((got.float() - want.float()).norm() / want.float().norm().clamp_min(1e-12))


@torch.no_grad()
def check_deployed(deployed: nn.Module, calibrated: nn.Module, baseline: nn.Module, left_out: list[str], inputs,
                   call) -> dict[str, float]:
    """How far the deployed denoiser's output is from the calibrated one's with the quantizers in `left_out`
    off, on `inputs` [(sample, timestep, condition)] fed through `call(unet, x, t, cond)`: raises when it
    is over MAX_DEPLOY_DIFF beyond what 16 bits alone change there (the 16-bit `baseline` against the
    float32 one; 16 bits alone change a small prediction a lot: 11% at the bundled model's last step).
    Returns the relative difference and the 16-bit share of it, at the input where the kernels add most."""
    worst = (float("-inf"), 0.0, 0.0)  # (excess, difference, 16-bit share)
    device = next(deployed.parameters()).device
    half = half_denoiser(baseline)
    with quantizers_off(calibrated, left_out):
        for x, t, y in inputs:
            x, y = x.to(device), move(y, device)
            diff = _rel(call(deployed, x, t, y).sample, call(calibrated, x, t, y).sample)
            own = _rel(call(half, x, t, y).sample, call(baseline, x, t, y).sample)
            worst = max(worst, (diff - own, diff, own))
    del half
    if worst[0] > MAX_DEPLOY_DIFF:
        raise UnsupportedOnDevice(f"The FP8 kernels' output differs from the calibrated model's by {worst[1]:.1%}, "
                                  f"{worst[0]:.1%} more than 16 bits alone (limit {MAX_DEPLOY_DIFF:.0%}), so their "
                                  "speed would not be this recipe's.")
    return {"relative_output_diff_vs_calibrated": worst[1], "of_which_16bit_alone": worst[2]}
