"""What a denoiser is conditioned on, as one value the sweep can move, batch and feed.

A condition is a tensor (class labels, or a text encoder's hidden states) or, for a UNet with added
conditions (SDXL: `addition_embed_type="text_time"`), a dict of tensors whose first axis is the batch:
{"encoder_hidden_states", "text_embeds", "time_ids"}. `unet_kwargs` turns it into the keywords the
diffusers UNet takes.
"""

from __future__ import annotations

from typing import Any

ADDED = ("text_embeds", "time_ids")  # SDXL's added_cond_kwargs


def move(cond: Any, device) -> Any:
    if isinstance(cond, dict):
        return {k: move(v, device) for k, v in cond.items()}
    return cond.to(device) if hasattr(cond, "to") else cond


def cat(conds: list) -> Any:
    """The conditions side by side along the batch axis."""
    import torch

    if isinstance(conds[0], dict):
        return {k: torch.cat([c[k] for c in conds]) for k in conds[0]}
    return torch.cat(conds)


def expand_like(cond: Any, like: Any) -> Any:
    """`cond` (one row) repeated to `like`'s batch."""
    if isinstance(cond, dict):
        return {k: v.expand(like[k].shape[0], *v.shape[1:]) for k, v in cond.items()}
    return cond.expand_as(like)


def unet_kwargs(cond: Any, kwarg: str) -> dict:
    """The UNet's keywords for `cond`: {kwarg: cond}, or, for a dict, encoder_hidden_states plus
    added_cond_kwargs."""
    if isinstance(cond, dict):
        return {"encoder_hidden_states": cond["encoder_hidden_states"],
                "added_cond_kwargs": {k: cond[k] for k in ADDED if k in cond}}
    return {kwarg: cond}


def from_unet_kwargs(kwargs: dict, kwarg: str) -> Any:
    """The condition of one recorded UNet call (the inverse of `unet_kwargs`)."""
    added = kwargs.get("added_cond_kwargs")
    if added:
        return {"encoder_hidden_states": kwargs["encoder_hidden_states"], **{k: added[k] for k in ADDED if k in added}}
    return kwargs.get(kwarg)


def detach_clone(cond: Any) -> Any:
    if isinstance(cond, dict):
        return {k: v.detach().clone() for k, v in cond.items()}
    return None if cond is None else cond.detach().clone()
