"""Run a modelopt-calibrated INT8 denoiser on real INT8 CPU kernels, for the speed stage.

`deploy_int8(baseline, calibrated)` copies the unquantized UNet and replaces every layer whose
weights and inputs modelopt quantizes with a kernel layer built from modelopt's own calibrated
integers and scales:
- convolutions: `Int8Conv2d`, oneDNN's `onednn::qconv2d_pointwise` (uint8 activations with zero
  point 128 = modelopt's symmetric [-128, 127], int8 per-output-channel weights, float32 output);
- linear layers: `engine.runtimes.torch.kernels.Int8Linear` (fbgemm, SmoothQuant's pre-quant scale
  applied first), as the language-model runtime does.
Layers modelopt left in high precision stay the baseline's. The deployed model is checked against
the calibrated (fake-quantized) one before it is timed, so the kernels time what was evaluated.
Nothing here times a fake-quantized module.

Speed (benchmarks/diffusion_step_profile.py): each INT8 convolution call costs a fixed ~50-70 us in
oneDNN whatever its size, so INT8 pays only where convolutions are wide enough. In the first bundled
UNet (16-64 channels) the layers INT8 replaces took 34% of a float32 step and the step sped up 1.01x;
the bundled UNet now has 32-128 channels: those layers take 58-64% of a step and run 1.5-2.2x faster,
and the step 1.3-1.6x (2 threads, or 1 when 2 are too noisy; `--width-scale K` times an untrained K-times
wider copy: 4x gives 1.76x). The rest (GroupNorm, SiLU, attention, high-precision convolutions,
embeddings, Python) is unchanged.
"""

from __future__ import annotations

import copy
import functools
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from engine.diffusion.qdq import qdq_layernorm
from engine.errors import UnsupportedOnDevice

_EPS = 1.0 / (1 << 24)  # modelopt treats amax at or below this as zero
MAX_DEPLOY_DIFF = 0.02  # largest relative difference deployed vs calibrated output accepted


def _int8_weight(module: nn.Module, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8 with the weight's shape, dequantization scale per output channel [N]) from modelopt's
    calibrated per-channel weight amax, checked against modelopt's own fake-quantized weight."""
    wq = module.weight_quantizer
    if wq.num_bits != 8 or getattr(wq, "block_sizes", None):
        raise UnsupportedOnDevice(f"'{name}': weight format {wq.num_bits} is not INT8 per channel.")
    amax = getattr(wq, "amax", None)
    w = module.weight.detach().float()
    n = w.shape[0]
    if amax is None:
        raise UnsupportedOnDevice(f"'{name}' has no calibrated weight amax.")
    amax = amax.detach().float().reshape(-1)
    if amax.numel() == 1:
        amax = amax.expand(n)
    if amax.numel() != n:
        raise UnsupportedOnDevice(f"'{name}': expected one weight amax per output channel ({n}), got {amax.numel()}.")
    zero = amax <= _EPS
    scale = torch.where(zero, torch.ones_like(amax), 127.0 / amax)  # modelopt: max_bound / amax
    shape = (n,) + (1,) * (w.dim() - 1)
    with torch.no_grad():
        expected = wq(module.weight.detach()).float()
    # modelopt's own integers: its fake-quantized weight times the scale. Reading them from there, not
    # rounding w * scale again, keeps the rare half-way tie that modelopt's op order rounds the other way.
    scaled = expected * scale.reshape(shape)
    q = torch.where(zero.reshape(shape), torch.zeros_like(scaled), scaled.round().clamp(-128, 127))
    off_grid = float((scaled - scaled.round()).abs().max()) if scaled.numel() else 0.0
    drift = int(((w * scale.reshape(shape)).round().clamp(-128, 127) - q).abs().gt(1).sum())
    if off_grid > 1e-3 or drift:  # not integers on this scale, or not the weight rounded: another quantizer
        raise UnsupportedOnDevice(
            f"The integer weights read from '{name}' do not reproduce modelopt's calibrated weights "
            f"(largest distance from the integer grid {off_grid:.3g}, {drift} of {q.numel()} off by more "
            "than one step); this modelopt version quantizes differently from what the INT8 kernels expect.")
    q = q.to(torch.int8)
    return q, 1.0 / scale


def _input_amax(module: nn.Module, name: str) -> float:
    iq = module.input_quantizer
    if iq.num_bits != 8 or getattr(iq, "block_sizes", None):
        raise UnsupportedOnDevice(f"'{name}': activation format {iq.num_bits} bits is not INT8 per tensor.")
    amax = getattr(iq, "amax", None)
    if amax is None or amax.numel() != 1 or float(amax) <= _EPS:
        raise UnsupportedOnDevice(f"'{name}': INT8 activations need one calibrated, non-zero per-tensor amax.")
    return float(amax.float().item())


def quantize_uint8(x: torch.Tensor, scale: float) -> torch.Tensor:
    """round(x / scale) + 128 clamped to [0, 255] as a uint8 tensor in x's memory format: one pass of
    torch's vectorized quantize, then its bytes seen as uint8 (`int_repr()` would copy them, slowly)."""
    with warnings.catch_warnings():  # quantized tensors are deprecated as a type; the kernel is not
        warnings.simplefilter("ignore", UserWarning)
        qx = torch.quantize_per_tensor(x, scale, 128, torch.quint8)
    # the new tensor holds the storage, so it outlives qx safely (`qx.view(torch.uint8)` would crash)
    return torch.empty(0, dtype=torch.uint8).set_(qx.untyped_storage(), qx.storage_offset(), qx.size(), qx.stride())


class Int8Conv2d(nn.Module):
    """INT8 weights (per output channel) x INT8 activations (calibrated per-tensor scale) on the CPU
    through oneDNN, float32 in and out."""

    _CONV = torch.ops.onednn.qconv2d_pointwise.default

    def __init__(self, q: torch.Tensor, dequant_scale: torch.Tensor, bias: torch.Tensor | None, input_amax: float,
                 stride, padding, dilation, groups: int):
        super().__init__()
        self.out_channels, self.in_channels = q.shape[0], q.shape[1] * groups
        self.kernel_size = tuple(q.shape[2:])
        self.stride, self.padding, self.dilation = list(stride), list(padding), list(dilation)
        self.groups = groups
        # modelopt quantizes x as round(x * 127 / amax) in [-128, 127]; oneDNN takes round(x / x_scale)
        # + 128 in uint8: the same integers (up to float rounding at exact ties).
        self.x_scale = input_amax / 127.0
        self.register_buffer("w_scale", dequant_scale.float().contiguous())
        self.register_buffer("w_zero", torch.zeros(self.out_channels, dtype=torch.long))
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous())
        self.register_buffer("packed", torch.ops.onednn.qconv_prepack(
            q.contiguous(), self.w_scale, self.x_scale, 128, self.stride, self.padding, self.dilation, groups, None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        xq = quantize_uint8(x.float(), self.x_scale)
        y = self._CONV(xq, self.x_scale, 128, self.packed, self.w_scale, self.w_zero, self.bias, self.stride,
                       self.padding, self.dilation, self.groups, 1.0, 0, torch.float32, "none", [], "")
        return y if y.dtype == dtype else y.to(dtype)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={tuple(self.stride)}, "
                "W8A8 (static activations), onednn::qconv2d_pointwise")


def int8_conv(module: nn.Module, name: str) -> Int8Conv2d:
    if getattr(module, "padding_mode", "zeros") != "zeros" or isinstance(module.padding, str):
        raise UnsupportedOnDevice(f"'{name}': only zero padding given as numbers runs on the INT8 convolution.")
    q, dequant = _int8_weight(module, name)
    return Int8Conv2d(q, dequant, module.bias, _input_amax(module, name), module.stride, module.padding,
                      module.dilation, module.groups)


def int8_linear(module: nn.Module, name: str) -> nn.Module:
    from engine.runtimes.torch import kernels
    from engine.runtimes.torch import weights as tw

    w = tw.int_weights(module)
    tw.check_matches_modelopt(module, w, name)
    return kernels.Int8Linear(w, None if module.bias is None else module.bias.detach(), tw.pre_quant_scale(module),
                              _input_amax(module, name), "static")


@functools.lru_cache(maxsize=1)
def int8_unavailable() -> str | None:
    """None when this CPU runs both INT8 kernels exactly, else why not (in words)."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.onednn, "qconv2d_pointwise"):
        return f"torch {torch.__version__} has no oneDNN INT8 convolution (onednn::qconv2d_pointwise)"
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        return "this PyTorch build has no fbgemm INT8 kernels"
    from engine.runtimes.torch.kernels import int8_probe_exact

    why = int8_probe_exact()
    if why:
        return why
    try:  # extreme products, as the linear probe: exact on CPUs with VNNI
        q = torch.full((4, 8, 3, 3), 127, dtype=torch.int8)
        q[1::2] = -128
        conv = Int8Conv2d(q, torch.ones(4), None, 127.0, (1, 1), (1, 1), (1, 1), 1)
        x = torch.full((2, 8, 5, 5), 127.0)
        x[1] = -128.0
        if not torch.equal(conv(x), F.conv2d(x, q.float(), padding=1)):
            return "oneDNN's INT8 convolution is not exact on this CPU (saturating products), so INT8 is not measured"
    except RuntimeError as exc:
        return f"oneDNN's INT8 convolution does not run here ({str(exc).splitlines()[0]})"
    return None


def deploy_int8(baseline: nn.Module, calibrated: nn.Module) -> tuple[nn.Module, dict[str, int]]:
    """The baseline UNet with each INT8-quantized layer of `calibrated` on a real INT8 kernel; and
    the count of layers per kind ({"conv_int8": .., "linear_int8": .., "layernorm_qdq": .., "high_precision": ..}).
    A LayerNorm whose input modelopt quantizes gets that input quantized and dequantized (engine.diffusion.qdq)."""
    from modelopt.torch.quantization.nn import TensorQuantizer

    why = int8_unavailable()
    if why:
        raise UnsupportedOnDevice(why)
    deployed = copy.deepcopy(baseline).eval()
    counts = {"conv_int8": 0, "linear_int8": 0, "layernorm_qdq": 0, "high_precision": 0}
    handled = set()
    for name, module in calibrated.named_modules():
        wq, iq = getattr(module, "weight_quantizer", None), getattr(module, "input_quantizer", None)
        if not isinstance(iq, TensorQuantizer):
            continue
        handled.update({f"{name}.weight_quantizer", f"{name}.input_quantizer", f"{name}.output_quantizer"})
        out_q = getattr(module, "output_quantizer", None)
        if out_q is not None and out_q.is_enabled:
            raise UnsupportedOnDevice(f"'{name}' quantizes its output; the INT8 kernels do not.")
        if not isinstance(wq, TensorQuantizer):  # input-only (a LayerNorm in modelopt 0.47+)
            if iq.is_enabled:
                deployed.set_submodule(name, qdq_layernorm(module, name, "int8"))
                counts["layernorm_qdq"] += 1
            continue
        if not wq.is_enabled and not iq.is_enabled:
            counts["high_precision"] += 1
            continue
        if not (wq.is_enabled and iq.is_enabled):
            raise UnsupportedOnDevice(f"'{name}' quantizes only its {'weights' if wq.is_enabled else 'inputs'}; "
                                      "the INT8 kernels take INT8 weights and activations.")
        if isinstance(module, nn.Conv2d):
            deployed.set_submodule(name, int8_conv(module, name))
            counts["conv_int8"] += 1
        elif isinstance(module, nn.Linear):
            deployed.set_submodule(name, int8_linear(module, name))
            counts["linear_int8"] += 1
        else:
            raise UnsupportedOnDevice(f"'{name}' ({type(module).__name__}) has no INT8 kernel here.")
    for name, module in calibrated.named_modules():
        if isinstance(module, TensorQuantizer) and module.is_enabled and name not in handled:
            raise UnsupportedOnDevice(f"Quantizer '{name}' (e.g. attention matmuls) has no INT8 kernel here.")
    return deployed, counts


@torch.no_grad()
def check_deployed(deployed: nn.Module, calibrated: nn.Module, inputs) -> float:
    """Relative difference of the deployed and calibrated denoisers' outputs on `inputs` (a list of
    (sample, timestep, labels)); raises when it is over MAX_DEPLOY_DIFF."""
    worst = 0.0
    for x, t, y in inputs:
        want = calibrated(x, t, class_labels=y).sample.float()
        got = deployed(x, t, class_labels=y).sample.float()
        worst = max(worst, float((got - want).norm() / want.norm().clamp_min(1e-12)))
    if worst > MAX_DEPLOY_DIFF:
        raise UnsupportedOnDevice(f"The INT8 kernels' output differs from the calibrated model's by {worst:.1%} "
                                  f"(limit {MAX_DEPLOY_DIFF:.0%}), so their speed would not be this recipe's.")
    return worst
