"""The INT8 range over denoising steps (engine/diffusion/step_calibration.py), on known activations."""

import pytest
import torch

from engine.diffusion.step_calibration import StepRangeCalibrator, at_step

# Two calibration batches at three timesteps; each tensor's amax is its largest |value|.
SEEN = {999: (8.0, 6.0), 500: (4.0, 2.0), 1: (1.0, 3.0)}


def _calibrated(method: str, percentile: float = 1.0, mark: bool = True) -> float:
    cal = StepRangeCalibrator(axis=None, percentile=percentile, method=method)
    for batch in range(2):
        for t, amaxes in SEEN.items():
            x = torch.tensor([0.5, -amaxes[batch]])
            if mark:
                with at_step(torch.tensor([t, t])):
                    cal.collect(x)
            else:
                cal.collect(x)
    return float(cal.compute_amax())


@pytest.mark.parametrize("method, percentile, expected", [
    ("mean-max", 1.0, (8 + 4 + 3) / 3),  # each step's largest amax, averaged over steps
    ("min-mean", 1.0, 2.0),  # the smallest of the steps' means (7, 3, 2)
    ("global_min", 1.0, 1.0),  # the smallest amax anywhere
    ("min-mean", 0.5, 3.0),  # the first half of the steps in sampling order (999, 500): min(7, 3)
])
def test_the_range_follows_the_rule(method, percentile, expected):
    assert _calibrated(method, percentile) == pytest.approx(expected)


def test_calls_without_a_step_get_the_plain_max():
    assert _calibrated("mean-max", mark=False) == 8.0


def test_a_reset_forgets_the_steps():
    cal = StepRangeCalibrator(method="mean-max")
    with at_step(10):
        cal.collect(torch.tensor([5.0]))
    cal.reset()
    with at_step(10):
        cal.collect(torch.tensor([2.0]))
    assert float(cal.compute_amax()) == 2.0


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        StepRangeCalibrator(method="median")
    with pytest.raises(ValueError):
        StepRangeCalibrator(percentile=0)


def test_only_convolutions_the_recipe_quantizes_get_the_step_range():
    """A layer the recipe keeps in high precision (e.g. '*proj_out.*' in modelopt's SmoothQuant config, or
    conv_in here) must not have its input quantizer turned back on by the per-step calibration."""
    pytest.importorskip("diffusers")
    from engine.diffusion.bundled import load_bundled
    from engine.diffusion.quantize import enabled_by, modelopt_config

    unet = load_bundled().unet
    cfg = modelopt_config("int8_sq", unet)
    assert not enabled_by(cfg, "conv_in.input_quantizer") and not enabled_by(cfg, "x.proj_out.input_quantizer")
    assert enabled_by(cfg, "down_blocks.0.resnets.0.conv1.input_quantizer")
    stepped = [e["quantizer_name"] for e in cfg["quant_cfg"] if "calibrator" in (e.get("cfg") or {})]
    assert stepped and "conv_in.input_quantizer" not in stepped and "conv_out.input_quantizer" not in stepped
