"""The PyTorch runtime backend: modelopt's calibrated integers on real low-precision kernels.

Modules: runtime (the `Runtime`: availability, deploy, measure, compare), handlers (one kernel
handler per precision), deploy (calibrated model -> kernel layers), kernels and weights (the layers
and modelopt's integers), fuse (sibling projections as one call), decode (the lean Llama loop),
hf_forward (transformers' loop), bench (timed generation). Importing this package does not import torch.
"""

from engine.runtimes.torch.runtime import PyTorchRuntime, TorchRuntime

__all__ = ["PyTorchRuntime", "TorchRuntime"]
