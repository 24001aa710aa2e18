"""An INT8 activation range chosen over the denoising steps, the rule modelopt's diffusers example uses
for INT8 convolutions (its PercentileCalibrator in examples/diffusers/quantization/calib/; the example is
not part of the modelopt package, so this is our implementation of the same rule).

A denoiser's activations change range with the timestep: max calibration takes the widest step and
spends INT8 levels the other steps never use. Here each step's amax is kept apart and the range is
taken over the first `percentile` of the steps in sampling order (noisiest first):
- "global_min": the smallest step amax (each step's amax being its smallest over the calibration batches);
- "min-mean": the smallest of the steps' mean amaxes over the batches;
- "mean-max": the mean over the steps of each step's largest amax.
The step of a call is read from `at_step` (set by engine.diffusion.quantize's forward loop from the
timestep it feeds), not counted, so batches, guidance and repeated passes cannot shift it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from modelopt.torch.quantization.calib.max import MaxCalibrator

METHODS = ("global_min", "min-mean", "mean-max")
_STEP: list[float | None] = [None]


@contextlib.contextmanager
def at_step(timestep) -> Iterator[None]:
    """Mark the denoiser calls inside as calls at `timestep` (a number or a tensor of equal values)."""
    t = torch.as_tensor(timestep).reshape(-1)
    _STEP[0] = float(t[0]) if t.numel() else None
    try:
        yield
    finally:
        _STEP[0] = None


class StepRangeCalibrator(MaxCalibrator):
    """A per-tensor (or per-axis) amax from per-step amaxes; plain max when no step was marked."""

    def __init__(self, num_bits=8, axis=None, unsigned=False, track_amax=False, percentile: float = 1.0,
                 method: str = "min-mean"):
        super().__init__(num_bits, axis, unsigned, track_amax)
        if method not in METHODS or not 0 < percentile <= 1:
            raise ValueError(f"method must be one of {METHODS} and 0 < percentile <= 1")
        self.percentile, self.method = percentile, method
        self._steps: dict[float, list] = {}  # timestep -> [min amax, max amax, sum of amaxes, count]

    @torch.no_grad()
    def collect(self, x):
        super().collect(x)  # the plain max too: used when calls were not marked with a step
        step = _STEP[0]
        if step is None:
            return
        from modelopt.torch.quantization import utils as quant_utils

        amax = quant_utils.reduce_amax(x, axis=quant_utils.convert_quantization_axis_to_reduce_axis(x, self._axis))
        amax = amax.detach().float()
        kept = self._steps.get(step)
        if kept is None:
            self._steps[step] = [amax.clone(), amax.clone(), amax.clone(), 1]
        else:
            kept[0], kept[1] = torch.minimum(kept[0], amax), torch.maximum(kept[1], amax)
            kept[2], kept[3] = kept[2] + amax, kept[3] + 1

    def reset(self):
        super().reset()
        self._steps = {}

    def compute_amax(self):
        if not self._steps:
            return super().compute_amax()
        order = sorted(self._steps, reverse=True)  # sampling order: the noisiest timestep first
        chosen = [self._steps[t] for t in order[:max(1, math.ceil(len(order) * self.percentile))]]
        if self.method == "global_min":
            amax = torch.stack([c[0] for c in chosen]).amin(dim=0)
        elif self.method == "min-mean":
            amax = torch.stack([c[2] / c[3] for c in chosen]).amin(dim=0)
        else:
            amax = torch.stack([c[1] for c in chosen]).mean(dim=0)
        self._calib_amax = amax
        return amax
