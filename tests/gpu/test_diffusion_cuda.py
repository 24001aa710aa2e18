"""The bundled diffusion denoiser on a GPU (skipped without one; benchmarks/gpu_check/run.sh runs it).

FP8 calibrated by modelopt on the GPU, deployed with torch._scaled_mm for its linear layers (sm89+), must
compute what the calibrated model computes; the sweep's speed stage times it against the bf16 baseline
and INT8 is refused with the reason (no INT8 convolution on CUDA in PyTorch)."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")

from engine.diffusion import fp8_deploy  # noqa: E402
from engine.diffusion.bundled import load_bundled  # noqa: E402
from engine.diffusion.quantize import calibration_inputs, quantize  # noqa: E402


def _call(u, x, t, y):
    return u(x, t, class_labels=y)


def test_fp8_denoiser_on_scaled_mm_matches_the_calibrated_one():
    if fp8_deploy.fp8_unavailable("cuda"):
        pytest.skip(fp8_deploy.fp8_unavailable("cuda"))
    model = load_bundled("cuda")
    calib = calibration_inputs(model.unet, model.scheduler, [0, 1, 2, 3], 10, seed=5)
    calibrated = quantize(model.unet, "fp8", calib)
    deployed, counts, left_out = fp8_deploy.deploy_fp8(model.unet, calibrated, "cuda")
    assert counts["linear_fp8"] > 0
    diffs = fp8_deploy.check_deployed(deployed, calibrated, model.unet, left_out, calib[::3][:4], _call)
    print("FP8 on torch._scaled_mm vs calibrated:", diffs)  # the gpu_check log keeps it
    assert diffs["relative_output_diff_vs_calibrated"] < diffs["of_which_16bit_alone"] + fp8_deploy.MAX_DEPLOY_DIFF


def test_bundled_diffusion_sweep_times_fp8_and_refuses_int8_on_the_gpu(tmp_path):
    from engine import pipeline
    from engine.spec import GenerationSpec, ModelRef, Recipe, SweepSpec, Workload
    from engine.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'lab.db'}")
    spec = SweepSpec(model=ModelRef("bundled-diffusion"), recipes=(Recipe("fp8"), Recipe("int8_sq")),
                     kind="diffusion", device="cuda", workload=Workload(batch_sizes=(8,)),
                     generation=GenerationSpec(labels=(0, 1), images_per_condition=2, steps=4, calib_images=4))
    results = {r.precision: r for r in pipeline.run_sweep(spec, store)}
    assert "INT8 convolution" in results["int8_sq"].provenance["speed_not_measured"]
    base = results["bf16"].provenance["speed"]
    assert base["device"]["kind"] == "cuda"
    assert base["measurements"][0]["provenance"]["kernels"]["kernels"] == "bf16 PyTorch (baseline)"
    if fp8_deploy.fp8_unavailable("cuda") is None:
        fp8 = results["fp8"]
        assert "speed_not_measured" not in fp8.provenance, fp8.provenance.get("speed_not_measured")
        assert fp8.provenance["speed"]["scope"].startswith("the speedup is of the FP8 linear layers only")
        assert fp8.metrics["step_latency_ms_bs8"] > 0
