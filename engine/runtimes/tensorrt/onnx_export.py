"""Export a (modelopt-quantized) diffusers denoiser to ONNX for TensorRT, as modelopt's diffusers
example does (examples/diffusers/quantization/onnx_utils/export.py: `torch.onnx.export` of the
quantized backbone under `torch.inference_mode()`, with dynamic axes).

modelopt's quantizers carry TorchScript-exporter symbolics, so the export uses that exporter
(`dynamo=False`): an INT8 quantizer becomes a QuantizeLinear/DequantizeLinear pair, an FP8 one
TensorRT's `trt::TRT_FP8QuantizeLinear`/`TRT_FP8DequantizeLinear`; TensorRT reads them as explicit
quantization. An unquantized denoiser exports with no Q/DQ node at all. Pure torch + onnx: this
runs on a CPU-only machine.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import TlabError

OPSET = 17  # modelopt's diffusers example exports SDXL's UNet at opset 17
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear", "TRT_FP8QuantizeLinear", "TRT_FP8DequantizeLinear")
OUTPUT = "noise_pred"
EXPORT_BATCH = 2  # the example batch traced; the batch axis stays dynamic


class OnnxExportError(TlabError):
    """The denoiser could not be exported to ONNX (or the onnx package is missing)."""


@dataclass(frozen=True)
class DenoiserOnnx:
    """An exported denoiser: its file, input names with their shape per image, Q/DQ node counts."""

    path: Path
    inputs: dict[str, tuple[int, ...]]  # name -> shape without the batch axis ("timestep": () = one value)
    batched: tuple[str, ...]  # inputs whose first axis is the batch
    qdq: dict[str, int]
    note: str | None = None  # what the file leaves out of the quantized model, and why

    def shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        """trtexec --shapes for one batch size."""
        return {name: ((batch, *dims) if name in self.batched else (1, *dims)) for name, dims in self.inputs.items()}

    @property
    def quantized(self) -> bool:
        return sum(self.qdq.values()) > 0


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise OnnxExportError("The TensorRT path exports the denoiser to ONNX, which needs the onnx package: "
                              "pip install 'tradeoff-lab[diffusion]' (or pip install onnx).") from exc
    return onnx


def denoiser_inputs(unet: Any, batch: int = EXPORT_BATCH) -> dict[str, Any]:
    """Example inputs for a diffusers UNet2DModel from its config: sample, timestep and, for a
    class-conditional model, class_labels."""
    import torch

    cfg = unet.config
    size = cfg.sample_size if isinstance(cfg.sample_size, (tuple, list)) else (cfg.sample_size, cfg.sample_size)
    param = next(unet.parameters())
    sample = torch.randn(batch, int(cfg.in_channels), *map(int, size), dtype=param.dtype, device=param.device)
    inputs = {"sample": sample,
              "timestep": torch.tensor([500], dtype=torch.int64, device=param.device)}
    if getattr(cfg, "num_class_embeds", None):
        inputs["class_labels"] = torch.arange(batch, device=param.device) % int(cfg.num_class_embeds)
    return inputs


def _positional(unet: Any, names: list[str]) -> Any:
    """A module whose forward(*inputs) returns the noise prediction tensor (ONNX export wants
    tensors in and out; diffusers UNets take keywords and return an output object)."""
    import torch

    class Positional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unet = unet

        def forward(self, *args):
            kwargs = dict(zip(names, args))
            sample, timestep = kwargs.pop("sample"), kwargs.pop("timestep")
            return self.unet(sample, timestep, return_dict=False, **kwargs)[0]

    return Positional()


def qdq_counts(path: str | Path) -> dict[str, int]:
    """How many of each quantize/dequantize op the ONNX graph holds (QDQ_OPS, zeros included)."""
    model = _onnx().load(str(path), load_external_data=False)
    counts = Counter(n.op_type for n in model.graph.node)
    return {op: counts.get(op, 0) for op in QDQ_OPS}


def export_denoiser(unet: Any, path: str | Path, opset: int = OPSET) -> DenoiserOnnx:
    """Write `unet` (unquantized, or quantized by modelopt) to `path` as ONNX and check the file."""
    import torch

    onnx = _onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = denoiser_inputs(unet)
    names = list(example)
    batched = tuple(n for n in names if n != "timestep")
    dynamic_axes = {n: {0: "batch"} for n in batched} | {OUTPUT: {0: "batch"}}
    was_training = unet.training
    unet.eval()
    dropped = _attention_quantizers_off(unet)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
            torch.onnx.export(_positional(unet, names), tuple(example.values()), str(path), input_names=names,
                              output_names=[OUTPUT], dynamic_axes=dynamic_axes, opset_version=opset,
                              do_constant_folding=True, dynamo=False)
    except Exception as exc:  # the exporter raises many types; say which model and why
        raise OnnxExportError(f"Exporting the denoiser to ONNX failed: {type(exc).__name__}: {exc}") from exc
    finally:
        unet.train(was_training)
        for q in dropped:
            q.enable()
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise OnnxExportError(f"The exported ONNX {path} does not pass onnx.checker: {exc}") from exc
    shapes = {n: tuple(int(d) for d in t.shape[1:]) for n, t in example.items()}  # per image; timestep: ()
    note = (f"FP8 attention ({len(dropped)} quantizers) not exported: modelopt exports quantized attention only "
            "from a 16-bit model; the file has quantized convolutions and linear layers") if dropped else None
    return DenoiserOnnx(path=path, inputs=shapes, batched=batched, qdq=qdq_counts(path), note=note)


def _attention_quantizers_off(unet: Any) -> list:
    """Turn off (and return) the enabled attention matmul quantizers of a 32-bit model: modelopt's export
    of quantized attention (its FP8 SDPA) refuses anything but 16-bit Q/DQ."""
    if next(unet.parameters()).element_size() < 4:
        return []
    found = [m for n, m in unet.named_modules() if n.endswith(("_bmm_quantizer", "softmax_quantizer"))
             and getattr(m, "is_enabled", False)]
    for q in found:
        q.disable()
    return found
