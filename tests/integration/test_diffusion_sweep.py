"""A diffusion sweep on the bundled digits model through run_sweep: modelopt INT8 SmoothQuant and FP8
(simulated quantization) against the unquantized baseline from the same seeds, the store, the image
grid, the speed stage on real INT8 kernels, and refusals before any work.

Small settings (10 images, 10 steps, 8 calibration images) keep the module well under two minutes on 2 cores.
"""

import math
import os
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("skimage")

from engine import pipeline  # noqa: E402
from engine.errors import ModelLoadError, SpecError, TlabError  # noqa: E402
from engine.spec import GenerationSpec, ModelRef, Recipe, SweepSpec, Workload  # noqa: E402
from engine.store import open_store  # noqa: E402

MODEL = ModelRef("bundled-diffusion")
GEN = GenerationSpec(labels=tuple(range(10)), images_per_condition=1, steps=10, calib_images=8, seed=0)
RECIPES = (Recipe("int8_sq"), Recipe("fp8"))
# 2-bit per-tensor weights in every layer: a recipe that must score worse than FP8
BROKEN_CFG = {"quant_cfg": [{"quantizer_name": "*", "enable": False},
                            {"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": 2, "axis": None}}],
              "algorithm": "max"}


def _spec(**changes) -> SweepSpec:
    fields = dict(model=MODEL, recipes=RECIPES, kind="diffusion", generation=GEN, experiment="diffusion-it")
    fields.update(changes)
    return SweepSpec(**fields)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    old = os.environ.get("TLAB_HOME")
    path = tmp_path_factory.mktemp("diffusion-home")
    os.environ["TLAB_HOME"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("TLAB_HOME", None)
        else:
            os.environ["TLAB_HOME"] = old


@pytest.fixture(scope="module")
def sweep(home):
    os.environ["TLAB_HOME"] = str(home)
    store = open_store()
    stages = []
    records = pipeline.run_sweep(_spec(), store, lambda f, s: stages.append((f, s)))
    return {"store": store, "records": records, "stages": stages, "home": home}


@pytest.fixture
def in_home(sweep, monkeypatch):
    monkeypatch.setenv("TLAB_HOME", str(sweep["home"]))
    return sweep


def _by(records, precision):
    return next(r for r in records if r.precision == precision)


def test_three_results_with_provenance(in_home):
    recs = in_home["records"]
    assert [r.precision for r in recs] == ["bf16", "int8_sq", "fp8"]
    assert len(in_home["store"].list_results()) == 3
    for r in recs:
        acc = r.provenance["accuracy"]
        assert acc["kind"] == "measured" and acc["versions"]["nvidia-modelopt"]
        assert "seed 0" in acc["method"] and "10 images" in acc["method"] and "10 steps" in acc["method"]
        assert "trained by this project on scikit-learn digits" in r.model
        assert 0 <= r.metrics["task_accuracy"] <= 1
    base = _by(recs, "bf16")
    assert "psnr_db" not in base.metrics and "ssim" not in base.metrics  # against itself: not meaningful
    for p in ("int8_sq", "fp8"):
        r = _by(recs, p)
        assert r.provenance["accuracy"]["engine"] == "modelopt simulated (fake) quantization in PyTorch"
        assert "scikit-image" in r.provenance["accuracy"]["method"]
        assert "latents" in r.provenance["accuracy"]["method"]


def test_int8_and_fp8_stay_close_to_the_baseline(in_home):
    recs = in_home["records"]
    base = _by(recs, "bf16").metrics["task_accuracy"]
    assert base >= 0.7, base  # the bundled model draws readable digits
    for p in ("int8_sq", "fp8"):
        m = _by(recs, p).metrics
        assert math.isfinite(m["psnr_db"]) and m["psnr_db"] > 30, (p, m)
        assert m["latent_psnr_db"] == pytest.approx(m["psnr_db"])
        assert 0.9 < m["ssim"] <= 1.0, (p, m)
        assert abs(m["task_accuracy_loss_pts"]) <= 20, (p, m)  # at most 2 of 10 images read differently
        assert m["task_accuracy_loss_pts"] == pytest.approx(100 * (base - m["task_accuracy"]))


def test_image_grid_is_saved_for_every_result(in_home):
    from PIL import Image

    for r in in_home["records"]:
        grid = r.provenance["images"]
        path = Path(grid["grid"])
        assert path.is_file() and path.name == f"{r.id}.png" and path.parent == in_home["home"] / "images"
        with Image.open(path) as im:
            rows = len(grid["rows"])
            assert im.height == 1 + rows * (16 * 3 + 1) and im.width == 1 + 10 * (16 * 3 + 1)


def test_rerun_reuses_stored_results(in_home):
    stages = []
    again = pipeline.run_sweep(_spec(), in_home["store"], lambda f, s: stages.append(s))
    assert [r.id for r in again] == [r.id for r in in_home["records"]]
    assert stages == [f"reused all {len(in_home['records'])} result(s) already in the store"]
    assert [r.created_at for r in again] == [r.created_at for r in in_home["records"]]


def test_broken_recipe_scores_lower_than_fp8(sweep, monkeypatch, tmp_path):
    from engine.diffusion import quantize

    monkeypatch.setenv("TLAB_HOME", str(tmp_path / "broken-home"))  # its grids do not replace the sweep's
    monkeypatch.setitem(quantize.CONFIG_OVERRIDES, "int8_sq", BROKEN_CFG)
    store = open_store(f"sqlite:///{tmp_path / 'broken.db'}")
    recs = pipeline.run_sweep(_spec(), store)
    broken, fp8 = _by(recs, "int8_sq").metrics, _by(sweep["records"], "fp8").metrics
    assert broken["psnr_db"] < fp8["psnr_db"] - 10, (broken, fp8)
    assert broken["task_accuracy"] < fp8["task_accuracy"], (broken, fp8)


def test_speed_stage_times_real_int8_kernels_only(monkeypatch, tmp_path):
    from engine.diffusion import kernels

    if kernels.int8_unavailable():
        pytest.skip(kernels.int8_unavailable())
    store = open_store(f"sqlite:///{tmp_path / 'speed.db'}")
    gen = GenerationSpec(labels=(0, 1, 2, 3), images_per_condition=1, steps=4, calib_images=4)
    recs = pipeline.run_sweep(_spec(generation=gen, workload=Workload(batch_sizes=(2,))), store)
    base, int8, fp8 = (_by(recs, p) for p in ("bf16", "int8_sq", "fp8"))
    assert fp8.provenance["speed_not_measured"] == "no FP8 kernels on CPU"
    assert not any(k.startswith(("step_latency", "latency", "speedup")) for k in fp8.metrics)
    for r in (base, int8):
        assert r.metrics["step_latency_ms_bs2"] > 0 and r.metrics["latency_ms_bs2"] > r.metrics["step_latency_ms_bs2"]
        speed = r.provenance["speed"]
        assert speed["kind"] == "measured" and speed["backend"] == "torch"
        assert speed["measurements"][0]["repeats"] >= 5
    kinfo = int8.provenance["speed"]["measurements"][0]["provenance"]["kernels"]
    assert kinfo["conv_int8"] > 0 and kinfo["linear_int8"] > 0
    assert kinfo["relative_output_diff_vs_calibrated"] < 0.02
    refused = int8.provenance["speed"]["speedup_refused"]
    assert ("speedup_bs2" in int8.metrics) != ("2" in refused)  # a speedup, or the reason it was refused
    if "speedup_bs2" in int8.metrics:
        assert int8.metrics["speedup"] == int8.metrics["speedup_bs2"] > 0


def _refused(spec_fn, match, tmp_path, error=TlabError):
    store = open_store(f"sqlite:///{tmp_path / 'refused.db'}")
    with pytest.raises(error, match=match):
        pipeline.run_sweep(spec_fn(), store)
    assert store.list_results() == []
    assert not (Path(os.environ["TLAB_HOME"]) / "images").exists()


def test_zero_steps_refused(tmp_path):
    _refused(lambda: _spec(generation=GenerationSpec(labels=(1,), steps=0)), "steps", tmp_path, SpecError)


def test_empty_labels_refused(tmp_path):
    _refused(lambda: _spec(generation=GenerationSpec(labels=())), "labels", tmp_path, SpecError)


def test_resolution_not_divisible_refused(tmp_path):
    _refused(lambda: _spec(generation=GenerationSpec(labels=(1,), resolution=18)), "not divisible by 4", tmp_path,
             SpecError)


def test_label_outside_the_digits_refused(tmp_path):
    _refused(lambda: _spec(generation=GenerationSpec(labels=(1, 12))), "digits from 0 to 9", tmp_path, SpecError)


def test_unknown_model_folder_refused(tmp_path):
    _refused(lambda: _spec(model=ModelRef(str(tmp_path / "no-such-unet"))), "not a local folder", tmp_path,
             ModelLoadError)


def test_pickle_only_folder_refused(tmp_path):
    folder = tmp_path / "pickled" / "unet"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"_class_name": "UNet2DModel"}')
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"not loaded")
    _refused(lambda: _spec(model=ModelRef(str(tmp_path / "pickled"))), "pickle", tmp_path, ModelLoadError)


def test_unet_folder_without_a_scheduler_refused(tmp_path):
    folder = tmp_path / "other" / "unet"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"_class_name": "UNet2DModel"}')
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    _refused(lambda: _spec(model=ModelRef(str(tmp_path / "other"))), "no scheduler", tmp_path, ModelLoadError)
