"""The INT8 kernel layers of the diffusion speed stage (engine/diffusion/kernels.py): exact integer
arithmetic, and a deployed bundled UNet that stays within the limit of modelopt's calibrated model."""

import pytest
import torch
import torch.nn.functional as F

from engine.diffusion import kernels

pytestmark = pytest.mark.skipif(bool(kernels.int8_unavailable()), reason=str(kernels.int8_unavailable()))


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "sliced"])
def test_quantize_uint8_gives_the_quantized_integers(layout):
    x = torch.randn(4, 8, 6, 6) * 3
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "sliced":
        x = x[1:3, :, 1:5]
    scale = 0.02  # saturates: values beyond +-2.56 clamp to 0 / 255
    want = torch.clamp(torch.round(x / scale) + 128, 0, 255).to(torch.uint8)
    got = kernels.quantize_uint8(x, scale)
    assert got.dtype == torch.uint8 and got.shape == x.shape
    assert torch.equal(got, want)
    assert int(got.min()) == 0 and int(got.max()) == 255
    junk = [torch.full_like(x, 7.0) for _ in range(4)]  # the bytes stay ours after the quantized tensor is gone
    assert torch.equal(got, want) and junk


@pytest.mark.parametrize("stride,layout", [(1, "nchw"), (2, "nchw"), (1, "channels_last")])
def test_int8_conv_matches_the_integer_convolution(stride, layout):
    gen = torch.Generator().manual_seed(0)
    q = torch.randint(-128, 128, (6, 5, 3, 3), generator=gen, dtype=torch.int8)
    w_scale = torch.rand(6, generator=gen) * 0.01 + 0.001
    bias = torch.randn(6, generator=gen)
    amax = 4.0
    conv = kernels.Int8Conv2d(q, w_scale, bias, amax, (stride, stride), (1, 1), (1, 1), 1)
    xi = torch.randint(-128, 128, (3, 5, 7, 7), generator=gen).float()  # integers on the activation grid
    x = xi * (amax / 127.0)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    want = F.conv2d(xi, q.float(), stride=stride, padding=1) * (amax / 127.0) * w_scale.view(1, -1, 1, 1) \
        + bias.view(1, -1, 1, 1)
    got = conv(x)
    assert got.dtype == torch.float32 and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


@pytest.fixture(scope="module")
def deployed_bundled():
    pytest.importorskip("diffusers")
    pytest.importorskip("modelopt")
    from engine.diffusion.bundled import load_bundled
    from engine.diffusion.quantize import calibration_inputs, quantize

    b = load_bundled()
    calib = calibration_inputs(b.unet, b.scheduler, [3, 7], 4, 1)
    calibrated = quantize(b.unet, "int8_sq", calib)
    deployed, counts = kernels.deploy_int8(b.unet, calibrated)
    return b, calibrated, deployed, counts, calib


def test_deployed_unet_runs_every_quantized_layer_on_int8_kernels(deployed_bundled):
    b, calibrated, deployed, counts, calib = deployed_bundled
    convs = [m for m in deployed.modules() if isinstance(m, kernels.Int8Conv2d)]
    assert counts["conv_int8"] == len(convs) > 0 and counts["linear_int8"] > 0
    diff = kernels.check_deployed(deployed, calibrated, calib[:2])
    assert 0.0 < diff <= kernels.MAX_DEPLOY_DIFF  # INT8 kernels, not the float model, and faithful to modelopt's
    x, t, y = calib[0]
    with torch.no_grad():
        out = deployed(x, t, class_labels=y).sample
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_check_deployed_refuses_a_kernel_that_computes_something_else(deployed_bundled):
    from engine.errors import UnsupportedOnDevice

    b, calibrated, deployed, counts, calib = deployed_bundled
    conv = next(m for m in deployed.modules() if isinstance(m, kernels.Int8Conv2d))
    saved = conv.x_scale
    conv.x_scale = saved / 16  # the wrong activation grid: most activations saturate
    try:
        with pytest.raises(UnsupportedOnDevice, match="differs from the calibrated model"):
            kernels.check_deployed(deployed, calibrated, calib[:2])
    finally:
        conv.x_scale = saved


def test_int8_weights_are_modelopts_own_integers_even_at_a_rounding_tie():
    """In a 256x256x3x3 convolution (seed 0), one weight sits at a half-way point that modelopt's op order
    rounds the other way from round(w * 127 / amax): the kernels must use modelopt's integer, not refuse
    the layer or deploy a different one."""
    import modelopt.torch.quantization as mtq

    from engine.diffusion.kernels import _int8_weight

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(256, 256, 3, padding=1))
    x = torch.randn(1, 256, 4, 4)
    mtq.quantize(model, mtq.INT8_DEFAULT_CFG, lambda m: m(x))
    conv = model[0]
    scale = (127.0 / conv.weight_quantizer.amax.detach().float().reshape(-1)).reshape(-1, 1, 1, 1)
    rerounded = (conv.weight.detach() * scale).round().clamp(-128, 127)
    with torch.no_grad():
        modelopts = (conv.weight_quantizer(conv.weight.detach()) * scale).round()
    assert int((rerounded != modelopts).sum()) >= 1  # the tie this test is about is there
    q, dq = _int8_weight(conv, "conv")
    assert q.dtype == torch.int8 and torch.equal(q.float(), modelopts)
    assert torch.allclose(dq.reshape(-1, 1, 1, 1) * q.float(), conv.weight_quantizer(conv.weight.detach()), rtol=0, atol=1e-6)


def test_int8_convolutions_are_calibrated_step_by_step(deployed_bundled):
    """As modelopt's diffusers example: each INT8 convolution's input range comes from per-step ranges (the
    4 sampling steps of the fixture), never above the plain max over all of them."""
    from engine.diffusion.step_calibration import StepRangeCalibrator

    b, calibrated, *_ = deployed_bundled
    convs = [(n, m) for n, m in calibrated.named_modules()
             if isinstance(m, torch.nn.Conv2d) and m.input_quantizer.is_enabled]
    assert convs
    for name, conv in convs:
        cal = conv.input_quantizer._calibrator
        assert isinstance(cal, StepRangeCalibrator) and len(cal._steps) == 4, name
        assert float(conv.input_quantizer.amax) <= float(torch.stack([s[1] for s in cal._steps.values()]).max()) + 1e-6


def test_fp8_quantizes_attention_too():
    from engine.diffusion.bundled import load_bundled
    from engine.diffusion.quantize import calibration_inputs, quantize

    b = load_bundled()
    fp8 = quantize(b.unet, "fp8", calibration_inputs(b.unet, b.scheduler, [3], 2, 1))
    attention = [m for n, m in fp8.named_modules() if n.endswith(("q_bmm_quantizer", "k_bmm_quantizer", "v_bmm_quantizer"))]
    assert len(attention) >= 3 and all(q.is_enabled and q.amax is not None for q in attention)
