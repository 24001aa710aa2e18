"""LayerNorms whose input modelopt quantizes, for the deployed denoisers.

modelopt (0.47) registers `nn.LayerNorm` as an input-quantized module (for FP8 attention fusion), so the
`*input_quantizer` wildcard of its INT8 SmoothQuant and FP8 configs also quantizes the input of every
LayerNorm in a text-to-image UNet's transformer blocks. No kernel normalizes low-precision input; the
deployed denoiser quantizes and dequantizes it first, as the calibrated model does and as TensorRT
runs the Q/DQ pair, so the deployed model computes (and its timing pays for) the recipe as evaluated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import UnsupportedOnDevice

_EPS = 1.0 / (1 << 24)  # modelopt treats amax at or below this as zero


def input_amax(quantizer, name: str) -> float:
    """The one calibrated, non-zero per-tensor amax of an input quantizer (UnsupportedOnDevice else)."""
    amax = getattr(quantizer, "amax", None)
    if getattr(quantizer, "block_sizes", None) or amax is None or amax.numel() != 1 or float(amax) <= _EPS:
        raise UnsupportedOnDevice(f"'{name}': the deployed kernels need one calibrated, non-zero per-tensor "
                                  "input amax.")
    return float(amax.float().item())


def input_format(quantizer, name: str) -> str:
    """"int8" or "fp8" (E4M3) for a modelopt input quantizer; UnsupportedOnDevice for anything else."""
    bits = quantizer.num_bits
    if bits == 8:
        return "int8"
    if isinstance(bits, (tuple, list)) and tuple(bits) == (4, 3):
        return "fp8"
    raise UnsupportedOnDevice(f"'{name}': input format {bits} is neither INT8 nor FP8 E4M3.")


def fake_quantize(x: torch.Tensor, fmt: str, amax: float) -> torch.Tensor:
    """x quantized and dequantized as modelopt does, in float32: INT8 round(x * 127 / amax) in
    [-128, 127]; FP8 E4M3 of clamp(x * 448 / amax)."""
    x = x.float()
    if fmt == "int8":
        return torch.fake_quantize_per_tensor_affine(x, amax / 127.0, 0, -128, 127)
    scale = 448.0 / amax
    return (x * scale).clamp(-448.0, 448.0).to(torch.float8_e4m3fn).float() / scale


class QdqLayerNorm(nn.Module):
    """`norm` (a LayerNorm) applied to its input quantized and dequantized in `fmt` at the calibrated amax."""

    def __init__(self, norm: nn.LayerNorm, fmt: str, amax: float):
        super().__init__()
        self.normalized_shape, self.eps, self.fmt, self.amax = tuple(norm.normalized_shape), norm.eps, fmt, amax
        self.weight = None if norm.weight is None else nn.Parameter(norm.weight.detach().clone(), requires_grad=False)
        self.bias = None if norm.bias is None else nn.Parameter(norm.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = fake_quantize(x, self.fmt, self.amax).to(x.dtype)
        return F.layer_norm(y, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, input {self.fmt.upper()} quantize-dequantize (amax {self.amax:.4g})"


def qdq_layernorm(module: nn.Module, name: str, fmt: str | None = None) -> QdqLayerNorm:
    """The deployed form of a modelopt input-quantized LayerNorm (the quantizer's own format unless `fmt`)."""
    if not isinstance(module, nn.LayerNorm):
        raise UnsupportedOnDevice(f"'{name}' ({type(module).__name__}) quantizes its input only; the deployed "
                                  "denoiser handles that for LayerNorm alone.")
    iq = module.input_quantizer
    found = input_format(iq, name)
    if fmt is not None and found != fmt:
        raise UnsupportedOnDevice(f"'{name}': input quantized as {found}, expected {fmt}.")
    return QdqLayerNorm(module, found, input_amax(iq, name))
