"""The GPU FP8 deployment of a diffusion denoiser (engine/diffusion/fp8_deploy.py) and the LayerNorm
quantize-dequantize both deployments use (engine/diffusion/qdq.py).

FP8 is timed on NVIDIA GPUs only (tests/gpu runs it there), but torch._scaled_mm also computes on the
CPU, so what the deployed model computes is checked here against modelopt's calibrated model."""

import pytest

torch = pytest.importorskip("torch")
mtq = pytest.importorskip("modelopt.torch.quantization")
pytest.importorskip("diffusers")

from torch import nn  # noqa: E402

from engine.diffusion import fp8_deploy  # noqa: E402
from engine.diffusion.qdq import QdqLayerNorm, qdq_layernorm  # noqa: E402
from engine.diffusion.quantize import quantize  # noqa: E402
from engine.errors import UnsupportedOnDevice  # noqa: E402
from engine.runtimes.torch.kernels import Fp8Linear  # noqa: E402
from tests import diffusion_tiny  # noqa: E402


def _call(u, x, t, y):
    return u(x, t, encoder_hidden_states=y)


@pytest.fixture(scope="module")
def t2i(tmp_path_factory):
    """The tiny text-to-image UNet, its FP8 calibration (modelopt) and calibration inputs."""
    from diffusers import UNet2DConditionModel

    folder = diffusion_tiny.text_to_image(tmp_path_factory.mktemp("t2i"))
    unet = UNet2DConditionModel.from_pretrained(folder / "unet").eval()
    gen = torch.Generator().manual_seed(0)
    calib = [(torch.randn(2, 4, 8, 8, generator=gen), torch.tensor(900 - 100 * i),
              torch.randn(2, 16, 16, generator=gen)) for i in range(8)]
    return unet, quantize(unet, "fp8", calib, call=_call), calib


@pytest.mark.parametrize("cfg", ["INT8_SMOOTHQUANT_CFG", "FP8_DEFAULT_CFG"])
def test_qdq_layernorm_computes_what_modelopt_simulates(cfg):
    torch.manual_seed(0)
    model = nn.Sequential(nn.LayerNorm(32), nn.Linear(32, 32))  # a linear layer: modelopt wants a weight to quantize
    with torch.no_grad():
        model[0].weight.uniform_(0.5, 1.5)
        model[0].bias.uniform_(-0.2, 0.2)
    x = torch.randn(64, 10, 32) * 3
    quantized = mtq.quantize(model, getattr(mtq, cfg), lambda m: m(x))
    assert quantized[0].input_quantizer.is_enabled  # modelopt quantizes LayerNorm inputs: the case handled
    deployed = qdq_layernorm(quantized[0], "norm")
    assert isinstance(deployed, QdqLayerNorm) and deployed.fmt == ("int8" if "INT8" in cfg else "fp8")
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), quantized[0](x), atol=1e-5, rtol=0)
        assert not torch.allclose(deployed(x), nn.functional.layer_norm(x, (32,), model[0].weight, model[0].bias))


def test_fp8_deployment_reproduces_the_calibrated_denoiser(t2i):
    unet, calibrated, calib = t2i
    deployed, counts, left_out = fp8_deploy.deploy_fp8(unet, calibrated, "cpu", check_device=False)
    assert counts["linear_fp8"] > 0 and counts["layernorm_qdq"] > 0
    assert counts["conv_16bit"] > 0 and counts["attention_16bit"] > 0  # no FP8 kernels for those in PyTorch
    assert any(n.endswith("softmax_quantizer") for n in left_out)
    for name, module in calibrated.named_modules():
        kernel = deployed.unet.get_submodule(name) if isinstance(module, nn.Linear) else None
        if isinstance(kernel, Fp8Linear):  # modelopt's own FP8 weights, not re-quantized ones
            assert torch.equal(kernel.dequantized_weight(), module.weight_quantizer(module.weight.detach()).float())
    diffs = fp8_deploy.check_deployed(deployed, calibrated, unet, left_out, calib[:4], _call)
    assert 0 < diffs["relative_output_diff_vs_calibrated"] < diffs["of_which_16bit_alone"] + fp8_deploy.MAX_DEPLOY_DIFF
    # the check switched the left-out quantizers off only while it ran
    assert all(calibrated.get_submodule(n).is_enabled for n in left_out)
    out = _call(deployed, *calib[0]).sample
    assert out.dtype == fp8_deploy.DTYPE and out.shape == calib[0][0].shape


def test_a_wrong_fp8_kernel_fails_the_check(t2i):
    unet, calibrated, calib = t2i
    deployed, _, left_out = fp8_deploy.deploy_fp8(unet, calibrated, "cpu", check_device=False)
    for module in deployed.modules():
        if isinstance(module, Fp8Linear):
            module.w_descale.mul_(1.5)  # every FP8 weight dequantized with the wrong scale
    with pytest.raises(UnsupportedOnDevice, match="differs from the calibrated model"):
        fp8_deploy.check_deployed(deployed, calibrated, unet, left_out, calib[:4], _call)


def test_fp8_is_refused_off_the_gpu_with_the_reason(t2i):
    unet, calibrated, _ = t2i
    assert "NVIDIA GPUs" in fp8_deploy.fp8_unavailable("cpu")
    with pytest.raises(UnsupportedOnDevice, match="no FP8 kernels on cpu"):
        fp8_deploy.deploy_fp8(unet, calibrated, "cpu")


def test_the_gpu_baseline_is_the_same_denoiser_in_16_bits(t2i):
    unet, _, calib = t2i
    half = fp8_deploy.half_denoiser(unet)
    assert next(half.parameters()).dtype == torch.bfloat16 and next(unet.parameters()).dtype == torch.float32
    with torch.no_grad():
        want, got = _call(unet, *calib[0]).sample, _call(half, *calib[0]).sample.float()
    assert float((got - want).norm() / want.norm()) < 0.05


def test_why_not_timed_is_the_speed_stages_answer_per_device():
    from engine.diffusion.kernels import int8_unavailable
    from engine.diffusion.speed_support import INT8_ON_CUDA, why_not_timed

    assert why_not_timed("bf16", "cpu") is None and why_not_timed("bf16", "cuda") is None
    assert why_not_timed("fp8", "cpu") == "no FP8 kernels on CPU"
    assert why_not_timed("int8_sq", "cpu") == int8_unavailable()  # None on a CPU with AVX512-VNNI
    assert why_not_timed("int8_sq", "cuda:0") == INT8_ON_CUDA
    assert "No real INT4 AWQ kernels" in why_not_timed("int4_awq", "cpu")
