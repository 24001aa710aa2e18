"""Fuse sibling projections that read the same input into one kernel call (QKV; gate + up), as
TensorRT-LLM does for every precision.

It is exact: each output channel is the same dot product of the same weights (for INT8, the same
integers with the same activation scale); only the number of kernel calls drops, from 7 to 4 per
Llama layer. At decode each call has a fixed cost (about 10 us for fbgemm) that a small model's
step feels. Siblings fuse only when interchangeable: plain nn.Linear of one dtype, or Int8Linear
with equal pre-quant scale, activation scale and mode (modelopt's SmoothQuant gives siblings a
shared smoothing scale). AWQ gives each sibling its own pre-quant scale, so INT4 siblings stay
apart: fusing them would change the calibrated model.
"""

from __future__ import annotations

import torch
from torch import nn

SIBLINGS = {"self_attn": ("q_proj", "k_proj", "v_proj"), "mlp": ("gate_proj", "up_proj")}
FUSED_NAME = {"self_attn": "qkv_proj", "mlp": "gate_up_proj"}


class FusedLinear(nn.Module):
    """One kernel for several siblings; `parts(x)` runs it once per input and splits the output."""

    def __init__(self, inner: nn.Module, names: tuple[str, ...], sizes: list[int]):
        super().__init__()
        self.inner, self.names, self.sizes = inner, names, sizes
        self._x: torch.Tensor | None = None
        self._version: int | None = -1
        self._parts: tuple[torch.Tensor, ...] = ()
        self._left = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # transformers calls q_proj, k_proj and v_proj one after another on the same tensor: the
        # first call computes all three, the next ones reuse it unless the input changed, and the
        # last one lets go of it (a long prompt's activations are large).
        version = None if x.is_inference() else x._version  # inference tensors cannot change in place
        if x is not self._x or version != self._version:
            self._parts = self.inner(x).split(self.sizes, dim=-1)
            self._x, self._version, self._left = x, version, len(self.sizes)
        parts = self._parts
        self._left -= 1
        if self._left <= 0:
            self._x, self._parts = None, ()
        return parts

    def extra_repr(self) -> str:
        return f"fused {'+'.join(self.names)}, out={self.sizes}"


class SiblingSlice(nn.Module):
    """Stands where one sibling was: its slice of the fused output."""

    def __init__(self, fused: FusedLinear, index: int):
        super().__init__()
        object.__setattr__(self, "fused", fused)  # not a child: the parent holds the fused layer once
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused.parts(x)[self.index]

    def extra_repr(self) -> str:
        return f"slice {self.index} of {self.fused.extra_repr()}"


def _fusable(mods: list[nn.Module]) -> bool:
    from engine.runtimes.torch.kernels import Int8Linear

    first = mods[0]
    if type(first) is nn.Linear:
        return all(type(m) is nn.Linear and m.weight.dtype == first.weight.dtype
                   and (m.bias is None) == (first.bias is None) for m in mods)
    if isinstance(first, Int8Linear):
        def same_pqs(m):
            a, b = m.pre_quant_scale, first.pre_quant_scale
            return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))

        return all(isinstance(m, Int8Linear) and m.activations == first.activations and m.x_scale == first.x_scale
                   and m.in_features == first.in_features and same_pqs(m) for m in mods)
    return False


def _fused_linear(mods: list[nn.Linear]) -> nn.Linear:
    w = torch.cat([m.weight.detach() for m in mods])
    out = nn.Linear(w.shape[1], w.shape[0], bias=mods[0].bias is not None, device=w.device, dtype=w.dtype)
    out.weight.data.copy_(w)
    if out.bias is not None:
        out.bias.data.copy_(torch.cat([m.bias.detach() for m in mods]))
    return out.requires_grad_(False)


def fuse_siblings(model: nn.Module) -> int:
    """Fuse every interchangeable sibling group of `model` in place; the number of groups fused."""
    from engine.runtimes.torch.kernels import Int8Linear

    fused = 0
    for parent in list(model.modules()):
        for role, names in SIBLINGS.items():
            block = getattr(parent, role, None)
            mods = [getattr(block, n, None) for n in names] if block is not None else []
            if not mods or any(m is None for m in mods) or not _fusable(mods):
                continue
            inner = _fused_linear(mods) if type(mods[0]) is nn.Linear else Int8Linear.fuse(mods)
            sizes = [m.out_features for m in mods]
            layer = FusedLinear(inner, names, sizes)
            setattr(block, FUSED_NAME[role], layer)
            for i, n in enumerate(names):
                setattr(block, n, SiblingSlice(layer, i))
            fused += 1
    return fused
