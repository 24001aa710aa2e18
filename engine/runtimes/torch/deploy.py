"""Turn a modelopt-calibrated model into one whose linear layers run real low-precision kernels.

`deploy(calibrated, precision, device)` builds a clean copy of the architecture (no modelopt
wrappers, no fake quantizers), loads the calibrated weights into it, and swaps every quantized
linear layer for the kernel layer its precision's handler builds (engine.runtimes.torch.handlers),
holding modelopt's own integer weights, scales and SmoothQuant/AWQ pre-quant scales. Nothing is
re-quantized from scratch.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from engine import registry
from engine.errors import UnsupportedOnDevice
from engine.runtimes.torch import handlers
from engine.runtimes.torch import weights as tw
from engine.runtimes.torch.decode import LEAN, check_against_transformers
from engine.runtimes.torch.fuse import FusedLinear, fuse_siblings

DECODE_LOOPS = ("auto", "transformers")


def baseline_dtype(precision: str, device: str) -> torch.dtype:
    """The compute dtype of the unquantized parts. CPUs run the baseline in float32 (no fast fp16
    matmuls; bf16 is slower than fp32 at decode batch sizes on most CPUs); GPUs in bf16/fp16."""
    if torch.device(device).type == "cpu":
        return torch.float32
    return torch.float16 if precision == "fp16" else torch.bfloat16


def _is_quant_linear(module: nn.Module) -> bool:
    return hasattr(module, "weight_quantizer") and hasattr(module, "input_quantizer") \
        and isinstance(getattr(module, "weight", None), torch.Tensor) and module.weight.dim() == 2


def _needs_kernel(module: nn.Module) -> bool:
    return module.weight_quantizer.is_enabled or module.input_quantizer.is_enabled \
        or tw.pre_quant_scale(module) is not None


def _check_no_other_quantizers(model: nn.Module, handled: set[str]) -> None:
    """Refuse models quantized in ways this runtime would silently drop (e.g. an FP8 KV cache)."""
    for name, module in model.named_modules():
        is_quantizer = hasattr(module, "num_bits") and hasattr(module, "is_enabled")
        if is_quantizer and module.is_enabled:
            owner = name.rsplit(".", 1)[0] if "." in name else ""
            leaf = name.rsplit(".", 1)[-1]
            if owner in handled and leaf in ("weight_quantizer", "input_quantizer"):
                continue
            raise UnsupportedOnDevice(
                f"'{name}' is an enabled quantizer the PyTorch runtime cannot deploy (it runs weight "
                "and activation quantization of linear layers only, not KV-cache or output "
                "quantization). Benchmark this recipe with TensorRT-LLM or see the estimate.")


def _fresh_copy(model: nn.Module) -> nn.Module:
    """Same architecture and weights, plain torch/transformers modules only."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        raise UnsupportedOnDevice("The PyTorch runtime deploys Hugging Face models (with a .config).")
    fresh = type(model)(copy.deepcopy(cfg))
    state = {k: v for k, v in model.state_dict().items() if "quantizer" not in k}
    missing, unexpected = fresh.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        raise UnsupportedOnDevice(f"Could not rebuild the model without modelopt wrappers "
                                  f"(missing {missing[:3]}, unexpected {unexpected[:3]}).")
    if getattr(cfg, "tie_word_embeddings", False) and hasattr(fresh, "tie_weights"):
        fresh.tie_weights()
    return fresh.eval()


def choose_decode_loop(model: nn.Module, wanted: str = "auto") -> tuple[str, str | None]:
    """("lean" or "transformers", why not lean): the lean loop where it reproduces transformers."""
    if wanted not in DECODE_LOOPS:
        raise ValueError(f"decode_loop must be one of {DECODE_LOOPS}, got {wanted!r}")
    if wanted == "transformers":
        return "transformers", "asked for"
    try:
        why = check_against_transformers(model)
    except Exception as exc:  # e.g. an op a device or torch version lacks: time with transformers instead
        why = f"it failed on this model and device ({type(exc).__name__}: {exc})"
    return (LEAN, None) if why is None else ("transformers", f"lean loop not used: {why}")


def deploy(calibrated: nn.Module, precision: str, device: str = "cpu",
           int8_activations: str = "static", decode_loop: str = "auto") -> nn.Module:
    """A copy of `calibrated` whose quantized linear layers run real kernels on `device`.

    precision: a registry name. Baselines (bf16/fp16) return the unquantized model in the
    device's baseline dtype (float32 on CPU). int8_activations: "static" uses the calibrated
    per-tensor activation scale (what modelopt simulated; TensorRT-LLM's W8A8_SQ_PER_CHANNEL),
    "dynamic" computes a per-tensor scale from each activation at run time. Sibling projections
    are fused (engine.runtimes.torch.fuse). decode_loop: "auto" times the model with the lean loop
    of engine.runtimes.torch.decode when it reproduces transformers' logits, "transformers" always
    with transformers' forward.
    """
    prec = registry.precision(precision)
    dev = torch.device(device)
    handler = handlers.handler(prec.name)
    if not prec.runs_on("torch", dev.type) or (handler is None and not prec.is_baseline):
        raise UnsupportedOnDevice(f"The PyTorch runtime has no {prec.label} kernels on {dev.type}.")
    options = handlers.DeployOptions(int8_activations)
    handled: set[str] = set()
    layers: dict[str, nn.Module] = {}
    with torch.no_grad():
        for name, module in calibrated.named_modules():
            if not _is_quant_linear(module):
                continue
            handled.add(name)
            if _needs_kernel(module):
                if prec.modelopt_cfg is None:
                    raise UnsupportedOnDevice(
                        f"'{name}' is quantized but the recipe says {prec.label}; pass the matching precision.")
                layers[name] = handler.build(module, name, dev, options)
        if prec.modelopt_cfg is not None and not layers:
            raise UnsupportedOnDevice(f"The model has no calibrated quantized layers for {prec.label}; "
                                      "calibrate it first (engine.quantize.apply_recipe).")
        _check_no_other_quantizers(calibrated, handled)
        fresh = _fresh_copy(calibrated)
        fresh.to(device=dev, dtype=baseline_dtype(prec.name, device))
        for name, layer in layers.items():
            fresh.set_submodule(name, layer.to(dev) if dev.type == "cuda" else layer)
        fresh.fused_groups = fuse_siblings(fresh)
    fresh.deployed_precision = prec.name  # read by the benchmark's provenance
    fresh.decode_loop, fresh.decode_loop_note = choose_decode_loop(fresh, decode_loop)
    if prec.name == "int8_sq":
        fresh.deployed_int8_activations = int8_activations
    return fresh


def deployed_weight_bytes(model: nn.Module) -> int:
    """Bytes of weights the deployed model reads: packed kernel weights plus every other parameter."""
    total = 0
    seen: set[int] = set()
    for module in model.modules():
        if hasattr(module, "weight_bytes") and callable(module.weight_bytes):
            total += module.weight_bytes()
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel() * p.element_size()
    return total


def _KERNEL_LAYERS() -> tuple[type, ...]:  # noqa: N802 - a constant that follows registrations
    return tuple(t for h in handlers.HANDLERS.values() for t in h.layer_types)


def describe(model: nn.Module) -> dict[str, int]:
    """How many layers run each kernel, for the provenance of a measurement."""
    kinds: dict[str, int] = {}
    for module in model.modules():
        if isinstance(module, _KERNEL_LAYERS()):
            kind = module.extra_repr().split(", ", 2)[-1]
        elif type(module) is nn.Linear:
            kind = f"nn.Linear ({str(module.weight.dtype).replace('torch.', '')})"
        elif isinstance(module, FusedLinear):
            kind = f"fused {'+'.join(module.names)}"
        else:
            continue
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds
