"""Diffusion sweeps of local diffusers pipelines through the same flow as the bundled model: a tiny
class-conditional UNet folder through run_sweep, a tiny Stable-Diffusion-style pipeline through
`tlab sweep --model <folder>`; real modelopt INT8 SmoothQuant against the unquantized pipeline from the
same seeds, results in the store with provenance, image grids on disk; bad input leaves the store as it was.
Random weights (tests/diffusion_tiny.py): the images are noise, but the comparison is real."""

import json
import math
import os
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("skimage")

from engine import pipeline  # noqa: E402
from engine.cli import main  # noqa: E402
from engine.errors import SpecError  # noqa: E402
from engine.spec import GenerationSpec, ModelRef, Recipe, SweepSpec  # noqa: E402
from engine.store import open_store  # noqa: E402
from tests import diffusion_tiny  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-pipelines")
    return {"labels": diffusion_tiny.class_conditional(root / "cc"), "prompts": diffusion_tiny.text_to_image(root / "t2i")}


def _check_results(records, name_part, conditioning):
    assert [r.precision for r in records] == ["bf16", "int8_sq"]
    base, int8 = records
    assert name_part in base.model and base.status == int8.status == "done"
    for r in records:
        assert Path(r.provenance["images"]["grid"]).is_file()
        acc = r.provenance["accuracy"]
        assert acc["kind"] == "measured" and "no task metric" in acc["task_metric"]
        assert "CLIP score and LPIPS are not computed" in acc["method"]
        assert "task_accuracy" not in r.metrics
    assert math.isfinite(int8.metrics["psnr_db"]) and int8.metrics["psnr_db"] > 10
    assert 0 < int8.metrics["ssim"] <= 1
    assert conditioning in int8.provenance["images"]["note"]
    assert "modelopt" in int8.provenance["accuracy"]["engine"]
    return int8


def test_class_conditional_folder_through_run_sweep(folders):
    store = open_store()
    gen = GenerationSpec(labels=(0, 2), images_per_condition=2, steps=4, calib_images=4)
    spec = SweepSpec(model=ModelRef(str(folders["labels"])), recipes=(Recipe("int8_sq"),), kind="diffusion",
                     generation=gen, experiment="tiny-cc")
    records = pipeline.run_sweep(spec, store)
    int8 = _check_results(records, "cc (UNet2DModel, class-conditional)", "labels")
    assert int8.metrics["latent_psnr_db"] == int8.metrics["psnr_db"]  # no VAE: the latents are the images
    assert {r.id for r in store.list_results()} == {r.id for r in records}
    assert pipeline.run_sweep(spec, store)[1].created_at == int8.created_at  # reused, not recomputed


def test_text_to_image_folder_through_the_cli(folders, capsys):
    code = main(["sweep", "--model", str(folders["prompts"]), "--precisions", "int8_sq", "--prompts",
                 "a red circle|a blue square", "--images-per-condition", "1", "--steps", "3", "--calib-images", "2",
                 "--guidance-scale", "3", "--experiment", "tiny-t2i", "--format", "json"])
    assert code == 0
    capsys.readouterr()
    records = open_store().list_results()
    int8 = _check_results(sorted(records, key=lambda r: r.precision != "bf16"), "t2i (StableDiffusionPipeline",
                          "prompts")
    assert math.isfinite(int8.metrics["latent_psnr_db"]) and 0 < int8.metrics["latent_ssim"] <= 1
    assert int8.spec["generation"]["prompts"] == ["a red circle", "a blue square"]
    assert int8.spec["generation"]["labels"] == [] and int8.spec["kind"] == "diffusion"
    assert "classifier-free guidance 3.0" in int8.provenance["accuracy"]["method"]
    assert main(["results", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {r["precision"] for r in shown} == {"bf16", "int8_sq"}


@pytest.mark.parametrize("changes, match", [
    ({"generation": GenerationSpec(labels=(), prompts=("a cat",), resolution=36)}, "not divisible by 8"),
    ({"generation": GenerationSpec(labels=(1,))}, "give at least one prompt"),
])
def test_bad_input_leaves_the_store_as_it_was(folders, tmp_path, changes, match):
    store = open_store(f"sqlite:///{tmp_path / 'refused.db'}")
    spec = SweepSpec(**{"model": ModelRef(str(folders["prompts"])), "recipes": (Recipe("int8_sq"),),
                        "kind": "diffusion", **changes})
    with pytest.raises(SpecError, match=match):
        pipeline.run_sweep(spec, store)
    assert store.list_results() == []
    assert not (Path(os.environ["TLAB_HOME"]) / "images").exists()


@pytest.mark.parametrize("kind", ["labels", "prompts"])
def test_tensorrt_timing_of_a_local_pipeline_without_tensorrt_is_refused_before_work(folders, tmp_path, kind):
    """Local pipelines take the TensorRT path too (tests/unit/test_tensorrt_runtime.py drives it with
    captured trtexec output); on a machine without TensorRT the sweep is refused before any work."""
    from engine.errors import UnsupportedOnDevice
    from engine.spec import Workload

    store = open_store(f"sqlite:///{tmp_path / 'refused.db'}")
    gen = GenerationSpec(labels=(0,)) if kind == "labels" else GenerationSpec(labels=(), prompts=("a cat",))
    spec = SweepSpec(model=ModelRef(str(folders[kind])), recipes=(Recipe("int8_sq"),), kind="diffusion",
                     generation=gen, runtime="tensorrt", workload=Workload(16, 4, (1,)))
    with pytest.raises(UnsupportedOnDevice, match="TensorRT"):
        pipeline.run_sweep(spec, store)
    assert store.list_results() == []


@pytest.mark.parametrize("kind", ["labels", "prompts"])
def test_local_unet_deploys_on_real_int8_kernels(folders, kind):
    """The speed stage's first half for a local pipeline: modelopt's INT8 SmoothQuant UNet, put on oneDNN /
    fbgemm INT8 kernels, checked against the calibrated model on calibration inputs (timing itself is the
    bundled sweep's test). A text-to-image UNet's LayerNorms, whose inputs modelopt quantizes too, are
    quantized and dequantized (engine/diffusion/qdq.py)."""
    from engine.diffusion import pipelines, sweep
    from engine.diffusion.kernels import int8_unavailable
    from engine.diffusion.quantize import quantize

    if int8_unavailable():
        pytest.skip(int8_unavailable())
    gen = (GenerationSpec(labels=(0, 1), images_per_condition=1, steps=2, calib_images=2) if kind == "labels" else
           GenerationSpec(labels=(), prompts=("a red square", "a blue circle"), images_per_condition=1, steps=2,
                          calib_images=2))
    model = pipelines.load(pipelines.check_source(ModelRef(str(folders[kind])), gen), "cpu")
    ctx = sweep._Context(model, gen, "cpu", {})
    ctx.runtime, ctx.calib = "torch", model.calibration_inputs(gen)
    calibrated = quantize(model.unet, "int8_sq", ctx.calib, call=model.call)
    deployed, why = sweep._deploy(ctx, Recipe("int8_sq"), calibrated)
    assert why is None, why
    info = deployed.kernel_info
    assert info["conv_int8"] > 0 and info["relative_output_diff_vs_calibrated"] < 0.05
    assert (info["layernorm_qdq"] > 0) == (kind == "prompts")
    x0, cond = model.timing_inputs(2, gen)
    assert model.denoise_loop(deployed, x0, cond, gen).shape == x0.shape
    assert sweep._deploy(ctx, Recipe("fp8"), calibrated) == (None, "no FP8 kernels on CPU")


def test_on_a_gpu_fp8_runs_scaled_mm_and_int8_is_refused(folders, monkeypatch):
    """The speed stage's deployment on an NVIDIA GPU, run here with the device check answered as a
    GPU with FP8 would (torch._scaled_mm also computes on the CPU): a bf16 baseline, FP8 linear layers
    on torch._scaled_mm with the LayerNorm inputs quantize-dequantized, and INT8 refused with the reason.
    tests/gpu/test_diffusion_cuda.py runs it on a real GPU."""
    from engine.diffusion import fp8_deploy, pipelines, sweep
    from engine.diffusion.quantize import quantize

    monkeypatch.setattr(sweep, "_on_gpu", lambda device: True)
    monkeypatch.setattr(fp8_deploy, "fp8_unavailable", lambda device: None)
    gen = GenerationSpec(labels=(), prompts=("a red square", "a blue circle"), images_per_condition=1, steps=2,
                         calib_images=2)
    model = pipelines.load(pipelines.check_source(ModelRef(str(folders["prompts"])), gen), "cpu")
    ctx = sweep._Context(model, gen, "cpu", {})
    ctx.runtime, ctx.calib = "torch", model.calibration_inputs(gen)
    base, why = sweep._deploy(ctx, Recipe(), None)
    assert why is None and base.kernel_info == {"kernels": "bf16 PyTorch (baseline)"}
    fp8, why = sweep._deploy(ctx, Recipe("fp8"), quantize(model.unet, "fp8", ctx.calib, call=model.call))
    assert why is None, why
    info = fp8.kernel_info
    assert info["linear_fp8"] > 0 and info["layernorm_qdq"] > 0 and info["conv_16bit"] > 0
    assert info["covers"].startswith("the speedup is of the FP8 linear layers only")
    x0, cond = model.timing_inputs(2, gen)
    for m in (base, fp8):  # the samplers feed float32; the 16-bit models take it
        assert model.denoise_loop(m, x0, cond, gen).shape == x0.shape
    int8 = quantize(model.unet, "int8_sq", ctx.calib, call=model.call)
    assert "no INT8 convolution kernel on CUDA" in sweep._deploy(ctx, Recipe("int8_sq"), int8)[1]
