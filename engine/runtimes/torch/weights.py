"""Read the integer weights and scales out of a modelopt-calibrated linear layer.

The deployed kernels must run the *calibrated* weights, not a fresh quantization. These helpers
repeat modelopt's integer quantizer (`modelopt.torch.quantization.tensor_quant._tensor_quant`)
operation by operation: scale = max_bound / amax, q = clamp(round(w * scale), -max_bound - 1,
max_bound), dequantized = q / scale. `check_matches_modelopt` then compares q / scale with the
layer's own fake-quantized weight, so a modelopt change that breaks this shows up as an error at
deploy time instead of as silently different numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.errors import UnsupportedOnDevice

_EPS = 1.0 / (1 << 24)  # modelopt treats amax at or below this as zero


@dataclass
class IntWeights:
    """q: integer values [N, K] (int8 tensor); scale: modelopt's quantization scale (max_bound / amax),
    [N] per output channel or [N, n_blocks] per block of `block` input channels."""

    q: torch.Tensor
    scale: torch.Tensor
    bits: int
    block: int | None  # None: per output channel

    @property
    def dequant_scale(self) -> torch.Tensor:
        """Multiplier that turns q back into weights: 1 / scale (1 where modelopt zeroed the channel)."""
        return 1.0 / self.scale

    def dequantize(self) -> torch.Tensor:
        """q / scale exactly as modelopt computes its fake-quantized weight ([N, K], float32)."""
        if self.block is None:
            return self.q.float() / self.scale[:, None]
        n, k = self.q.shape
        nb = self.scale.shape[1]
        padded = torch.zeros(n, nb * self.block, dtype=torch.float32, device=self.q.device)
        padded[:, :k] = self.q.float()
        out = padded.view(n, nb, self.block) / self.scale[:, :, None]
        return out.view(n, nb * self.block)[:, :k]


def _quantize(w: torch.Tensor, amax: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """modelopt's signed, full-range integer quantizer; amax broadcasts against w."""
    w = w.float()
    amax = amax.float()
    max_bound = float(2 ** (bits - 1) - 1)
    scale = torch.tensor(max_bound, device=amax.device) / amax
    zero = amax <= _EPS
    scale = torch.where(zero, torch.zeros_like(scale), scale)
    q = torch.clamp((w * scale).round_(), -max_bound - 1, max_bound)
    scale = torch.where(zero, torch.ones_like(scale), scale)  # modelopt divides by 1 for zeroed channels
    return q.to(torch.int8), scale


def _quantizer_block(quantizer) -> int | None:
    sizes = getattr(quantizer, "block_sizes", None)
    if not sizes:
        return None
    if sizes.get("type", "static") != "static":
        raise UnsupportedOnDevice("Dynamic block quantization (MX/NVFP4 formats) has no PyTorch CPU kernel.")
    block = sizes.get(-1) or sizes.get(1)
    other = [k for k in sizes if isinstance(k, int) and k not in (-1, 1) and sizes[k]]
    if not block or other:
        raise UnsupportedOnDevice(f"Only block quantization along the input dimension is deployable, got {sizes}.")
    return int(block)


def int_weights(linear) -> IntWeights:
    """The integer weights of a modelopt QuantLinear, per channel (INT8) or per block (INT4 AWQ)."""
    quantizer = linear.weight_quantizer
    bits = quantizer.num_bits
    if not isinstance(bits, int):
        raise UnsupportedOnDevice(f"Weight format {bits} is not an integer format.")
    amax = getattr(quantizer, "amax", None)
    if amax is None:
        raise UnsupportedOnDevice("The layer has no calibrated weight amax; calibrate the model first.")
    w = linear.weight.detach()
    n, k = w.shape
    block = _quantizer_block(quantizer)
    if block is None:
        if amax.numel() == 1:
            amax = amax.reshape(1, 1).expand(n, 1)
        if amax.numel() != n:
            raise UnsupportedOnDevice(f"Expected one weight amax per output channel ({n}), got {amax.numel()}.")
        q, scale = _quantize(w, amax.reshape(n, 1), bits)
        return IntWeights(q, scale.reshape(n).expand(n).contiguous(), bits, None)
    nb = -(-k // block)
    if amax.numel() != n * nb:
        raise UnsupportedOnDevice(f"Expected {n * nb} block amax values, got {amax.numel()}.")
    # modelopt pads the input dimension with zeros up to a whole number of blocks.
    padded = torch.nn.functional.pad(w.float(), (0, nb * block - k))
    q, scale = _quantize(padded.reshape(n * nb, block), amax.reshape(n * nb, 1), bits)
    return IntWeights(q.reshape(n, nb * block)[:, :k].contiguous(), scale.reshape(n, nb), bits, block)


def check_matches_modelopt(linear, weights: IntWeights, name: str = "") -> None:
    """Raise if q / scale differs from modelopt's own fake-quantized weight for this layer."""
    with torch.no_grad():
        expected = linear.weight_quantizer(linear.weight.detach()).float()
    got = weights.dequantize()
    if got.shape != expected.shape or not torch.equal(got, expected):
        diff = (got - expected).abs().max().item() if got.shape == expected.shape else float("nan")
        raise UnsupportedOnDevice(
            f"The integer weights read from layer {name or type(linear).__name__} do not reproduce "
            f"modelopt's calibrated weights (max difference {diff:.3g}); this modelopt version quantizes "
            "differently from what the PyTorch runtime expects. Please report it.")


def pre_quant_scale(linear) -> torch.Tensor | None:
    """SmoothQuant / AWQ per-input-channel scale modelopt multiplies the activation by (or None)."""
    s = getattr(linear.input_quantizer, "pre_quant_scale", None)
    return None if s is None else s.detach().float().reshape(-1)


def static_input_amax(linear) -> float | None:
    """The calibrated per-tensor activation amax when the input quantizer is an enabled INT8 one."""
    iq = linear.input_quantizer
    if not iq.is_enabled:
        return None
    if iq.num_bits != 8 or iq.block_sizes:
        raise UnsupportedOnDevice(f"Activation format {iq.num_bits} bits is not INT8 per-tensor.")
    amax = getattr(iq, "amax", None)
    if amax is None or amax.numel() != 1:
        raise UnsupportedOnDevice("INT8 activations need one calibrated per-tensor amax.")
    return float(amax.float().item())
