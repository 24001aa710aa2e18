"""Turn a model into what QAT or sparse fine-tuning trains, and check it afterwards.

QAT: modelopt PTQ calibration (engine.quantize.apply_recipe); the quantizers stay in place, their
amax frozen, and gradients pass them straight through. Sparse fine-tuning: `mts.sparsify` without
`mts.export`, so each linear stays a modelopt SparseModule whose forward multiplies its mask in; the
mask is baked into the weights only after training (`finish_sparse`).
"""

import warnings
from typing import Any

from engine import registry
from engine.errors import TlabError
from engine.quantize import CALIB_BATCH, apply_recipe, calibration_batches
from engine.spec import Recipe


def quantize_for_qat(model: Any, precision: str, calib: list) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return apply_recipe(model, Recipe(precision=precision), calib)


def sparsify_for_training(model: Any, sparsity: str, calib: list) -> Any:
    """2:4-sparsify with modelopt (the same call as a sweep's), keeping the masks live for training."""
    import torch
    import modelopt.torch.sparsity as mts

    method = registry.sparsity(sparsity)
    device = next(model.parameters()).device
    config = None
    if method.needs_data:
        batches = [torch.cat(g).to(device) for g in calibration_batches(calib, CALIB_BATCH)]
        config = {"data_loader": batches, "collect_func": lambda x: x, "device": str(device)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method.needs_data:
            return mts.sparsify(model, method.modelopt_mode, config=config)
        with torch.no_grad():
            return mts.sparsify(model, method.modelopt_mode, config=config)


def sparse_masks(model: Any) -> dict[str, Any]:
    """{module name: bool mask} of every linear that modelopt pruned (a copy)."""
    return {name: m._weight_mask.detach().clone() for name, m in model.named_modules()
            if getattr(m, "_weight_mask", None) is not None}


def finish_sparse(model: Any, masks: dict[str, Any]) -> dict[str, int]:
    """Bake the masks into the weights (`mts.export`) and check the 2:4 structure held: every group of
    4 input weights keeps at least 2 zeros, and they sit exactly where the mask taken before training
    says. Returns {"layers": n, "zeros": n}; raises TlabError if training broke the pattern."""
    import modelopt.torch.sparsity as mts

    for name, m in model.named_modules():
        if name in masks and not bool((m._weight_mask == masks[name]).all()):
            raise TlabError(f"The 2:4 mask of {name} changed during training; the sparse model is not valid.")
    model = mts.export(model)
    return check_two_four(model, masks)


def check_two_four(model: Any, masks: dict[str, Any]) -> dict[str, int]:
    zeros = 0
    for name, mask in masks.items():
        weight = model.get_submodule(name).weight.detach()
        if bool((weight[~mask] != 0).any()):
            raise TlabError(f"{name} has non-zero weights where its 2:4 mask prunes them.")
        per_group = (weight.reshape(weight.shape[0], -1, 4) == 0).sum(-1)
        if bool((per_group < 2).any()):
            raise TlabError(f"{name} has a group of 4 weights with fewer than 2 zeros: not 2:4 sparse.")
        zeros += int((~mask).sum())
    if not masks:
        raise TlabError("No layer was 2:4-pruned; the model's linear layers do not fit the 2:4 pattern.")
    return {"layers": len(masks), "zeros": zeros}


def quantizer_summary(model: Any) -> dict[str, int]:
    """How many modelopt weight quantizers are enabled and calibrated (amax set)."""
    enabled = calibrated = 0
    for m in model.modules():
        q = getattr(m, "weight_quantizer", None)
        for sub in (q if hasattr(q, "__iter__") else [q]) if q is not None else []:
            if getattr(sub, "is_enabled", False):
                enabled += 1
                calibrated += getattr(sub, "amax", None) is not None
    return {"enabled": enabled, "calibrated": calibrated}
