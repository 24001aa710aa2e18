"""Linear layers that run real low-precision kernels shipped with PyTorch.

CPU
- `Int8Linear`: W8A8 through fbgemm (`quantized::linear_with_input_q_dq_qweight_dq_output_fp32`
  for the calibrated static activation scale, `quantized::linear_dynamic` for dynamic per-tensor
  activation scales). The symmetric INT8 activation range [-128, 127] of modelopt becomes fbgemm's
  uint8 with zero point 128: the same 256 values, so the integer products are identical.
- `Int4Linear` (CPU): weight-only INT4 through `aten::_weight_int4pack_mm_for_cpu` (bf16 activations).
CUDA
- `Int4Linear` (CUDA): `aten::_weight_int4pack_mm` (tinygemm, sm80+, bf16).
- `Fp8Linear`: `torch._scaled_mm` with per-tensor scales (sm89+).

Every layer multiplies the activation by modelopt's pre_quant_scale (SmoothQuant / AWQ) first,
exactly as the calibrated (simulated) model does.
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

from engine.errors import UnsupportedOnDevice
from engine.runtimes.torch.weights import IntWeights

INT4_KERNEL_GROUPS = (256, 128, 64, 32)  # group sizes the int4pack kernels accept


def _pqs_buffer(module: nn.Module, pqs: torch.Tensor | None, dtype: torch.dtype) -> None:
    module.register_buffer("pre_quant_scale", None if pqs is None else pqs.to(dtype).contiguous())


def _quiet_quantized_tensor(*args):
    """fbgemm's packed weights are built from a per-channel quantized tensor; torch warns that this
    tensor type is deprecated, which says nothing about the kernel we run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch._make_per_channel_quantized_tensor(*args)


class Int8Linear(nn.Module):
    """INT8 weights (per output channel) x INT8 activations on CPU (fbgemm), float32 in and out."""

    def __init__(self, weights: IntWeights, bias: torch.Tensor | None, pqs: torch.Tensor | None,
                 input_amax: float | None, activations: str = "static"):
        super().__init__()
        if weights.bits != 8 or weights.block is not None:
            raise UnsupportedOnDevice("Int8Linear needs per-channel INT8 weights.")
        if activations not in ("static", "dynamic"):
            raise ValueError(f"activations must be 'static' or 'dynamic', got {activations!r}")
        if activations == "static" and input_amax is None:
            raise UnsupportedOnDevice("Static INT8 activations need the calibrated input amax "
                                      "(an INT8 SmoothQuant recipe); use activations='dynamic'.")
        self.activations = activations
        # fbgemm's activation scale: x is quantized as round(x / x_scale) + 128, modelopt's as
        # round(x * 127 / amax); both give the same integers (up to float rounding at exact ties).
        self.x_scale = float(input_amax) / 127.0 if input_amax else 0.0
        if activations == "static" and self.x_scale == 0.0:
            raise UnsupportedOnDevice("The calibrated activation amax is zero; recalibrate with more data.")
        self._pack(weights.q, weights.dequant_scale.double(), bias)
        _pqs_buffer(self, pqs, torch.float32)

    def _pack(self, q: torch.Tensor, dequant_scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.out_features, self.in_features = q.shape
        qw = _quiet_quantized_tensor(q.cpu().contiguous(), dequant_scale.cpu(),
                                     torch.zeros(self.out_features, dtype=torch.long), 0)
        b = None if bias is None else bias.detach().float().cpu().contiguous()
        self._packed = torch.ops.quantized.linear_prepack(qw, b)

    @classmethod
    def fuse(cls, layers: list[Int8Linear]) -> Int8Linear:
        """One layer whose output is the siblings' outputs side by side: their packed integers and
        per-channel scales concatenated as they are (the caller checks that their inputs are quantized
        alike; see engine.runtimes.torch.fuse)."""
        unpacked = [torch.ops.quantized.linear_unpack(layer._packed) for layer in layers]
        q = torch.cat([qw.int_repr() for qw, _ in unpacked])
        scales = torch.cat([qw.q_per_channel_scales() for qw, _ in unpacked])
        biases = [b if b is not None else torch.zeros(layer.out_features) for (_, b), layer in zip(unpacked, layers)]
        bias = None if all(b is None for _, b in unpacked) else torch.cat(biases)
        first = layers[0]
        fused = cls.__new__(cls)
        nn.Module.__init__(fused)
        fused.activations, fused.x_scale = first.activations, first.x_scale
        fused._pack(q, scales, bias)
        _pqs_buffer(fused, first.pre_quant_scale, torch.float32)
        return fused

    # Resolved once: at decode, Python work per call is a large share of a 135M model's step.
    _STATIC = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32.default
    _DYNAMIC = torch.ops.quantized.linear_dynamic.default

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        if self.pre_quant_scale is not None:
            x = x * self.pre_quant_scale
        if x.dtype != torch.float32:
            x = x.float()
        # fbgemm flattens leading dimensions itself (no reshape needed). Without __torch_function__
        # handling, torch does not look that attribute up on the packed weights (a TorchScript object),
        # a lookup that fails by throwing a C++ exception: about 8 us of a 16 us call at decode.
        with torch._C.DisableTorchFunctionSubclass():
            if self.activations == "static":
                y = self._STATIC(x.contiguous(), self.x_scale, 128, self._packed)
            else:
                y = self._DYNAMIC(x.contiguous(), self._packed, False)
        return y if y.dtype == dtype else y.to(dtype)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, W8A8 ({self.activations} activations), fbgemm"

    def weight_bytes(self) -> int:
        return self.out_features * self.in_features + 8 * self.out_features


@functools.lru_cache(maxsize=1)
def int8_probe_exact() -> str | None:
    """None when fbgemm's INT8 kernel computes extreme products exactly on this CPU, else why not.

    Without AVX512-VNNI, fbgemm multiplies uint8 x int8 pairs into saturating 16-bit sums, which
    corrupts full-range activations such as modelopt's; this probe catches that before we time it.
    """
    k, n = 64, 8
    q = torch.full((n, k), 127, dtype=torch.int8)
    q[1::2] = -128
    w = IntWeights(q, torch.ones(n), 8, None)
    layer = Int8Linear(w, None, None, input_amax=127.0, activations="static")
    x = torch.full((2, k), 127.0)
    x[1] = -128.0
    got = layer(x)
    want = x @ q.float().t()
    if not torch.equal(got, want):
        return ("fbgemm's INT8 kernel saturates on this CPU (no AVX512-VNNI): full-range INT8 "
                "activations would be computed wrongly, so INT8 is not measured here.")
    return None


def int4_kernel_group(k: int, block: int) -> int | None:
    """Largest kernel group size that divides both K and modelopt's block: every kernel group then
    lies inside one modelopt block and reuses its scale, reproducing the calibration exactly."""
    for g in INT4_KERNEL_GROUPS:
        if k % g == 0 and block % g == 0:
            return g
    return None


def _int4_scales_and_zeros(weights: IntWeights, group: int, dtype: torch.dtype) -> torch.Tensor:
    """[K / group, N, 2] (scale, zero) for w = (u - 8) * scale + zero with u = q + 8 (zero = 0)."""
    k = weights.q.shape[1]
    per_block = weights.dequant_scale  # [N, n_blocks]
    block_of_group = torch.arange(k // group) * group // weights.block
    scales = per_block[:, block_of_group].t()  # [K / group, N]
    return torch.stack([scales, torch.zeros_like(scales)], dim=-1).to(dtype).contiguous()


class Int4Linear(nn.Module):
    """INT4 weight-only (AWQ) with bf16 activations: the int4pack kernels of PyTorch (CPU or CUDA).

    The kernel keeps scales in bf16 (modelopt keeps them in float32), a relative rounding of at
    most 2^-9 per scale; the 4-bit integers themselves are modelopt's.
    """

    def __init__(self, weights: IntWeights, bias: torch.Tensor | None, pqs: torch.Tensor | None,
                 device: torch.device | str = "cpu"):
        super().__init__()
        device = torch.device(device)
        if weights.bits != 4 or weights.block is None:
            raise UnsupportedOnDevice("Int4Linear needs INT4 weights quantized in blocks.")
        n, k = weights.q.shape
        group = int4_kernel_group(k, weights.block)
        if group is None:
            raise UnsupportedOnDevice(
                f"No INT4 kernel group size ({INT4_KERNEL_GROUPS}) divides both the input size {k} and "
                f"modelopt's block {weights.block}, so the calibrated INT4 weights cannot run on this kernel.")
        self.in_features, self.out_features, self.group = k, n, group
        self.block = weights.block
        u = (weights.q.to(device, torch.int32) + 8).contiguous()  # [-8, 7] -> [0, 15]
        self.cuda_kernel = device.type == "cuda"
        if self.cuda_kernel:
            inner = next((t for t in (8, 4, 2) if k % (t * 16) == 0), None)
            if inner is None or n % 8:
                raise UnsupportedOnDevice(f"The CUDA INT4 kernel needs K divisible by 32 and N by 8 (got {k}, {n}).")
            packed_bytes = ((u[:, ::2] << 4) | u[:, 1::2]).to(torch.uint8)  # two values per byte
            packed = torch.ops.aten._convert_weight_to_int4pack(packed_bytes, inner)
        else:
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(u, 1)
        self.register_buffer("packed", packed)
        self.register_buffer("scales_and_zeros", _int4_scales_and_zeros(weights, group, torch.bfloat16).to(device))
        self.register_buffer("bias", None if bias is None else bias.detach().to(device, torch.bfloat16))
        _pqs_buffer(self, None if pqs is None else pqs.to(device), torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        if self.pre_quant_scale is not None:
            x2 = x2 * self.pre_quant_scale  # in float32, as the calibrated model does
        x2 = x2.to(torch.bfloat16).contiguous()
        if self.cuda_kernel:
            y = torch.ops.aten._weight_int4pack_mm(x2, self.packed, self.group, self.scales_and_zeros)
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, self.packed, self.group, self.scales_and_zeros)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        kernel = "_weight_int4pack_mm" if self.cuda_kernel else "_weight_int4pack_mm_for_cpu"
        return (f"in={self.in_features}, out={self.out_features}, INT4 weight-only, modelopt block "
                f"{self.block} as kernel group {self.group}, {kernel}")

    def weight_bytes(self) -> int:
        return self.out_features * self.in_features // 2 + self.scales_and_zeros.numel() * 2


def fp8_scale(amax: torch.Tensor) -> torch.Tensor:
    """modelopt's FP8 scale 448 / amax in float32 (amax at or below 2^-24 counts as 1)."""
    amax = amax.detach().float().reshape(())
    safe = torch.where(amax <= 1.0 / (1 << 24), torch.ones_like(amax), amax)
    return 448.0 / safe


def to_fp8(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """fp8_e4m3fn(clamp(x * scale)), the quantizing half of modelopt's `_fp8_eager`."""
    return (x.float() * scale).clamp(min=-448.0, max=448.0).to(torch.float8_e4m3fn)


class Fp8Linear(nn.Module):
    """FP8 E4M3 weights and activations with per-tensor scales through torch._scaled_mm (CUDA sm89+).

    Mirrors modelopt's FP8 fake quantizer: x8 = fp8(clamp(x * 448 / amax)), dequantized by 1 / scale.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, weight_amax: torch.Tensor,
                 input_amax: torch.Tensor, pqs: torch.Tensor | None, device, out_dtype=torch.bfloat16):
        super().__init__()
        n, k = weight.shape
        if k % 16 or n % 16:
            raise UnsupportedOnDevice(f"torch._scaled_mm needs both dimensions divisible by 16 (got {k}, {n}).")
        self.in_features, self.out_features, self.out_dtype = k, n, out_dtype
        w_scale, x_scale = fp8_scale(weight_amax), fp8_scale(input_amax)
        # _scaled_mm wants the second operand column-major: keep [N, K] row-major and pass its .t().
        self.register_buffer("weight_fp8", to_fp8(weight, w_scale).to(device).contiguous())
        self.register_buffer("w_descale", (1 / w_scale).to(device))
        self.register_buffer("x_scale", x_scale.to(device))
        self.register_buffer("x_descale", (1 / x_scale).to(device))
        self.register_buffer("bias", None if bias is None else bias.detach().to(device, out_dtype))
        _pqs_buffer(self, None if pqs is None else pqs.to(device), torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features).float()
        if self.pre_quant_scale is not None:
            x2 = x2 * self.pre_quant_scale
        y = torch._scaled_mm(to_fp8(x2, self.x_scale), self.weight_fp8.t(), scale_a=self.x_descale,
                             scale_b=self.w_descale, bias=self.bias, out_dtype=self.out_dtype)
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight_fp8.float() * self.w_descale

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, FP8 E4M3 per-tensor, torch._scaled_mm"

    def weight_bytes(self) -> int:
        return self.out_features * self.in_features
