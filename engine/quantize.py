"""Apply a recipe to a model with NVIDIA Model Optimizer: 2:4 sparsity first, then PTQ calibration.

One verb (torchao style): `apply_recipe(model, recipe, calib)`. The model is changed in place;
the caller passes a fresh copy so recipes never leak into each other.
"""

import copy
from collections.abc import Callable
from typing import Any

from engine import registry
from engine.errors import UnsupportedOnDevice
from engine.spec import Recipe

Progress = Callable[[float, str], None]
CALIB_BATCH = 4  # calibration sequences per forward pass (logits of a batch are vocab-sized)


def check_runnable(recipe: Recipe, device: str) -> None:
    """Raise UnsupportedOnDevice before any work if this device cannot calibrate the recipe."""
    prec = registry.precision(recipe.precision)
    if prec.cuda_only_calibration and not device.startswith("cuda"):
        raise UnsupportedOnDevice(
            f"{prec.label} calibration needs an NVIDIA GPU: modelopt's dynamic FP4 block quantizer runs "
            f"only on CUDA, and this run is on {device}. Pick another precision here, or run on a GPU "
            "machine (serving NVFP4 also needs a Blackwell GPU). The GPU Selector page estimates its speed.")


def modelopt_config(recipe: Recipe) -> dict | None:
    """The modelopt quantization config for a recipe (None for an unquantized precision)."""
    import modelopt.torch.quantization as mtq

    prec = registry.precision(recipe.precision)
    if prec.modelopt_cfg is None:
        cfg = None
    else:
        cfg = copy.deepcopy(getattr(mtq, prec.modelopt_cfg))
    if recipe.kv_cache == "fp8":
        kv = copy.deepcopy(mtq.FP8_KV_CFG)["quant_cfg"]
        if cfg is None:  # KV cache only: start from everything disabled
            cfg = {"quant_cfg": [{"quantizer_name": "*", "enable": False}], "algorithm": "max"}
        cfg = mtq.update_quant_cfg_with_kv_cache_quant(cfg, kv)
    return cfg


def calibration_batches(calib: list, size: int) -> list[list]:
    """Consecutive [1, len] sequences grouped `size` at a time; a group closes early where the
    length changes (sequences of different lengths cannot share a batch without padding)."""
    groups: list[list] = []
    for seq in calib:
        if groups and len(groups[-1]) < size and groups[-1][-1].shape[1:] == seq.shape[1:]:
            groups[-1].append(seq)
        else:
            groups.append([seq])
    return groups


def apply_recipe(model: Any, recipe: Recipe, calib: list, progress: Progress | None = None) -> Any:
    """Sparsify (if asked) then quantize `model` in place with calibration batches `calib`."""
    import torch

    progress = progress or (lambda f, s: None)
    device = next(model.parameters()).device
    # Few large batches, not many single sequences: AWQ's search and SmoothQuant's statistics run
    # once per forward call, so batching cuts calibration time without changing the data.
    batches = [torch.cat(group).to(device) for group in calibration_batches(calib, CALIB_BATCH)]

    sparse = registry.sparsity(recipe.sparsity)
    cfg = modelopt_config(recipe)
    # Progress of this recipe's preparation: pruning takes the first half when quantization follows.
    prune_share = (0.5 if cfg is not None else 1.0) if sparse.modelopt_mode else 0.0

    def forward_loop(m):
        with torch.no_grad():
            for i, b in enumerate(batches):
                m(b)
                progress(prune_share + (1 - prune_share) * (i + 1) / len(batches), f"calibrating {recipe.label}")

    if sparse.modelopt_mode:
        import modelopt.torch.sparsity as mts

        stage = f"pruning 2:4 ({sparse.label})"
        progress(0.0, stage)
        config = None
        if sparse.needs_data:
            def hessian_loop(m):  # SparseGPT's statistics pass, reported per batch (its masks follow)
                for i, b in enumerate(batches):
                    m(b)
                    progress(prune_share * 0.5 * (i + 1) / len(batches), stage)
                progress(prune_share * 0.5, f"{stage}: computing masks")

            # device: SparseGPT's Hessian device (its default is cuda)
            config = {"forward_loop": hessian_loop, "device": str(device)}
        with torch.no_grad() if not sparse.needs_data else _nullcontext():
            model = mts.sparsify(model, sparse.modelopt_mode, config=config)
        model = mts.export(model)  # bake the masks into the weights before quantizing (as hf_ptq does)
        progress(prune_share, stage)

    if cfg is not None:
        import modelopt.torch.quantization as mtq

        model = mtq.quantize(model, cfg, forward_loop)
    elif recipe.precision == "fp16":
        _round_weights(model, torch.float16)
    return model


def _round_weights(model: Any, dtype: Any) -> None:
    """Store weights at `dtype` precision while computing in the model's dtype (CPU lacks fast fp16)."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(p.dtype))


def round_to_bf16(model: Any) -> None:
    """The sweep's reference: bfloat16 weights, as a deployed BF16 checkpoint would hold them."""
    import torch

    _round_weights(model, torch.bfloat16)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False
