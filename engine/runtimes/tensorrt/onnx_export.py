"""Export a (modelopt-quantized) diffusers denoiser to ONNX for TensorRT, as modelopt's diffusers
example does (examples/diffusers/quantization/onnx_utils/export.py: `torch.onnx.export` of the
quantized backbone under `torch.inference_mode()`, with dynamic axes).

modelopt's quantizers carry TorchScript-exporter symbolics, so the export uses that exporter
(`dynamo=False`): an INT8 quantizer becomes a QuantizeLinear/DequantizeLinear pair, an FP8 one
TensorRT's `trt::TRT_FP8QuantizeLinear`/`TRT_FP8DequantizeLinear`; TensorRT reads them as explicit
quantization. An unquantized denoiser exports with no Q/DQ node at all. Pure torch + onnx: this
runs on a CPU-only machine.

Inputs come from the UNet's config: sample and timestep; encoder_hidden_states for a text-conditioned
UNet2DConditionModel (Stable Diffusion 1.x/2.x), its token count the pipeline tokenizer's
model_max_length; class_labels for a class-conditional one. A UNet that needs more (SDXL's added
conditions) is refused with the reason. FP8 attention exports from a float16 copy (`export_denoiser`).
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.errors import TlabError

OPSET = 17  # modelopt's diffusers example exports SDXL's UNet at opset 17
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear", "TRT_FP8QuantizeLinear", "TRT_FP8DequantizeLinear")
OUTPUT = "noise_pred"
EXPORT_BATCH = 2  # the example batch traced; the batch axis stays dynamic
TEXT_TOKENS = 77  # CLIP's model_max_length: the prompt length Stable Diffusion 1.x/2.x UNets see
MAX_TEXT_TOKENS = 8192
ATTENTION_QUANTIZERS = ("_bmm_quantizer", "softmax_quantizer")  # modelopt's quantized diffusers Attention


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
    dtype: str = "float32"  # of its inputs and unquantized layers (FP8 attention needs a 16-bit file)

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


def unsupported(cfg: Any) -> str | None:
    """Why a UNet with this config needs inputs the export does not build (None: it needs none): SDXL's
    added conditions, image conditioning, class embeddings other than a label table, per-block text widths."""
    added = getattr(cfg, "addition_embed_type", None)
    if added == "text_time" and _pooled_width(cfg) is None:
        return ("This SDXL-style UNet (addition_embed_type='text_time') does not give addition_time_embed_dim and "
                "projection_class_embeddings_input_dim, from which the export sizes its text_embeds and time_ids "
                "inputs; time it with the PyTorch backend.")
    if added and added != "text_time":
        return (f"This UNet's addition_embed_type={added!r} needs added_cond_kwargs the TensorRT export does not "
                "build; time it with the PyTorch backend.")
    hid = getattr(cfg, "encoder_hid_dim_type", None)
    if hid not in (None, "text_proj"):
        return (f"This UNet's encoder_hid_dim_type={hid!r} needs image embeddings (added_cond_kwargs) the TensorRT "
                "export does not build; time it with the PyTorch backend.")
    if getattr(cfg, "class_embed_type", None) is not None:
        return (f"This UNet's class_embed_type={cfg.class_embed_type!r} takes class_labels the TensorRT export "
                "does not build (it builds integer labels for num_class_embeds only); time it with the PyTorch "
                "backend.")
    cross = getattr(cfg, "cross_attention_dim", None)
    if isinstance(cross, (list, tuple)) and len(set(cross)) > 1:
        return (f"This UNet's cross_attention_dim differs per block {tuple(cross)}; one encoder_hidden_states "
                "tensor cannot feed every block, so the export cannot build it. Give a UNet with one "
                "cross_attention_dim.")
    return None


def text_width(cfg: Any) -> int | None:
    """The last axis of the encoder_hidden_states a text-conditioned UNet takes (None: a UNet without
    cross-attention): encoder_hid_dim where the UNet projects the text itself, else cross_attention_dim
    (one value, or a per-block list whose values agree)."""
    if getattr(cfg, "encoder_hid_dim", None):
        return int(cfg.encoder_hid_dim)
    cross = getattr(cfg, "cross_attention_dim", None)
    if isinstance(cross, (list, tuple)):
        return int(cross[0]) if cross and len(set(cross)) == 1 else None
    return int(cross) if cross else None


def denoiser_inputs(unet: Any, batch: int = EXPORT_BATCH, text_tokens: int = TEXT_TOKENS) -> dict[str, Any]:
    """Example inputs for a diffusers UNet2DModel or UNet2DConditionModel from its config: sample,
    timestep and, as the model takes them, encoder_hidden_states (batch, text_tokens, width) and
    class_labels. Raises OnnxExportError for a UNet that needs more (`unsupported`)."""
    import torch

    cfg = unet.config
    check_exportable(unet, text_tokens)
    size = cfg.sample_size if isinstance(cfg.sample_size, (tuple, list)) else (cfg.sample_size, cfg.sample_size)
    param = next(unet.parameters())
    sample = torch.randn(batch, int(cfg.in_channels), *map(int, size), dtype=param.dtype, device=param.device)
    inputs = {"sample": sample,
              "timestep": torch.tensor([500], dtype=torch.int64, device=param.device)}
    width = text_width(cfg)
    if width:
        inputs["encoder_hidden_states"] = torch.randn(batch, text_tokens, width, dtype=param.dtype,
                                                      device=param.device)
    if getattr(cfg, "num_class_embeds", None):
        inputs["class_labels"] = torch.arange(batch, device=param.device) % int(cfg.num_class_embeds)
    if getattr(cfg, "addition_embed_type", None) == "text_time":  # SDXL's added conditions
        inputs["text_embeds"] = torch.randn(batch, _pooled_width(cfg), dtype=param.dtype, device=param.device)
        # original size, crop corner, target size: example values only (the graph does not depend on them)
        side = 8 * int(size[0])
        inputs["time_ids"] = torch.tensor([[side, side, 0, 0, side, side]] * batch, dtype=param.dtype,
                                          device=param.device)
    return inputs


def _pooled_width(cfg: Any) -> int | None:
    """The width of the pooled text embeddings an SDXL-style UNet takes: its added projection sees them
    beside one addition_time_embed_dim embedding for each of the 6 time ids."""
    dim = getattr(cfg, "addition_time_embed_dim", None)
    total = getattr(cfg, "projection_class_embeddings_input_dim", None)
    return int(total - 6 * dim) if dim and total and total > 6 * dim else None


def check_exportable(unet: Any, text_tokens: int = TEXT_TOKENS) -> None:
    """Raise OnnxExportError, saying what to do, when `unet` cannot be exported as asked."""
    why = unsupported(unet.config)
    if why:
        raise OnnxExportError(why)
    # a tokenizer whose model_max_length was never set reports 1e30 (transformers' VERY_LARGE_INTEGER)
    if text_width(unet.config) and (not isinstance(text_tokens, int) or not 0 < text_tokens <= MAX_TEXT_TOKENS):
        raise OnnxExportError(f"text_tokens must be the number of tokens the tokenizer pads prompts to (its "
                              f"model_max_length, {TEXT_TOKENS} for CLIP), 1 to {MAX_TEXT_TOKENS}; got "
                              f"{text_tokens!r}. Set the tokenizer's model_max_length.")


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
            added = {k: kwargs.pop(k) for k in ("text_embeds", "time_ids") if k in kwargs}
            if added:  # SDXL's added conditions go in as one dict
                kwargs["added_cond_kwargs"] = added
            return self.unet(sample, timestep, return_dict=False, **kwargs)[0]

    return Positional()


def qdq_counts(path: str | Path) -> dict[str, int]:
    """How many of each quantize/dequantize op the ONNX graph holds (QDQ_OPS, zeros included)."""
    model = _onnx().load(str(path), load_external_data=False)
    counts = Counter(n.op_type for n in model.graph.node)
    return {op: counts.get(op, 0) for op in QDQ_OPS}


def export_denoiser(unet: Any, path: str | Path, opset: int = OPSET, text_tokens: int = TEXT_TOKENS) -> DenoiserOnnx:
    """Write `unet` (unquantized, or quantized by modelopt) to `path` as ONNX and check the file.
    `text_tokens`: the prompt length a text-conditioned UNet is fed (the tokenizer's model_max_length).

    A model with quantized attention (the FP8 recipe) is written from a 16-bit copy, as modelopt's
    diffusers example exports FP8: modelopt exports quantized attention (its FP8 SDPA) only with
    16-bit Q/DQ. Should that fail, the float32 model is written without attention Q/DQ and the note
    says why. `unet` itself is left as it was (dtype, mode, quantizers)."""
    _onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_exportable(unet, text_tokens)  # before any copy or trace
    attention = _attention_quantizers(unet)
    failed = None
    if attention:
        try:
            return _write(sixteen_bit_copy(unet), path, opset, text_tokens)
        except OnnxExportError as exc:
            failed = exc
    for q in attention:
        q.disable()
    try:
        info = _write(unet, path, opset, text_tokens)
    finally:
        for q in attention:
            q.enable()
    if failed is None:
        return info
    return replace(info, note=f"FP8 attention ({len(attention)} quantizers) not exported: the 16-bit export that "
                              f"carries it failed ({failed}); the file is the {info.dtype} model with quantized "
                              "convolutions and linear layers only")


def _write(unet: Any, path: Path, opset: int, text_tokens: int) -> DenoiserOnnx:
    """Trace `unet` as it is (its dtype, its enabled quantizers) into `path` and check the file."""
    import torch

    onnx = _onnx()
    example = denoiser_inputs(unet, text_tokens=text_tokens)
    names = list(example)
    batched = tuple(n for n in names if n != "timestep")
    dynamic_axes = {n: {0: "batch"} for n in batched} | {OUTPUT: {0: "batch"}}
    was_training = unet.training
    unet.eval()
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
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise OnnxExportError(f"The exported ONNX {path} does not pass onnx.checker: {exc}") from exc
    shapes = {n: tuple(int(d) for d in t.shape[1:]) for n, t in example.items()}  # per image; timestep: ()
    dtype = str(example["sample"].dtype).removeprefix("torch.")
    return DenoiserOnnx(path=path, inputs=shapes, batched=batched, qdq=qdq_counts(path), dtype=dtype)


def _attention_quantizers(unet: Any) -> list:
    """The enabled attention quantizers (q/k/v matmul inputs, softmax) of a modelopt-quantized UNet."""
    return [m for n, m in unet.named_modules() if n.endswith(ATTENTION_QUANTIZERS) and getattr(m, "is_enabled", False)]


def sixteen_bit_copy(unet: Any) -> Any:
    """A copy of `unet` in float16 (bfloat16 stays bfloat16) whose quantizers export 16-bit Q/DQ, as
    modelopt's diffusers example sets them (trt_high_precision_dtype): what its FP8 SDPA export needs.
    float16, not bfloat16: the FP8 engine is built with --fp8 --fp16, as the example builds it."""
    import torch

    bf16 = next(unet.parameters()).dtype == torch.bfloat16
    copy16 = copy.deepcopy(unet)
    # .half()/.bfloat16(), not .to(dtype): diffusers' .to() warns about casting a loaded model
    copy16 = (copy16.bfloat16() if bf16 else copy16.half()).eval()
    flag = "BFloat16" if bf16 else "Half"
    for m in copy16.modules():
        if hasattr(type(m), "trt_high_precision_dtype"):  # modelopt's TensorQuantizer
            m.trt_high_precision_dtype = flag
    return copy16
