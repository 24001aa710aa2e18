"""SDXL-style pipelines (two text encoders; pooled text embeddings and size/crop time ids as the UNet's
added conditions) through the diffusion sweep: a tiny StableDiffusionXLPipeline built offline with random
weights (tests/diffusion_tiny.py). The sampler must draw exactly what diffusers' own pipeline draws."""

import json
import math
import shutil

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("skimage")

import torch  # noqa: E402

from engine import pipeline  # noqa: E402
from engine.diffusion import pipelines  # noqa: E402
from engine.diffusion.bundled import initial_noise  # noqa: E402
from engine.errors import ModelLoadError  # noqa: E402
from engine.spec import GenerationSpec, ModelRef, Recipe, SweepSpec  # noqa: E402
from engine.store import open_store  # noqa: E402
from tests import diffusion_tiny  # noqa: E402

PROMPTS = ("a red square", "a cat")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return diffusion_tiny.sdxl(tmp_path_factory.mktemp("sdxl"))


def _gen(**changes) -> GenerationSpec:
    fields = dict(labels=(), prompts=PROMPTS, images_per_condition=1, steps=3, calib_images=2, scheduler="default")
    return GenerationSpec(**{**fields, **changes})


def _load(folder, gen):
    model = pipelines.load(pipelines.check_source(ModelRef(str(folder)), gen), "cpu")
    model.check(gen)
    return model


@pytest.mark.parametrize("guidance", [None, 3.0])
def test_the_sampler_draws_what_diffusers_sdxl_pipeline_draws(folder, guidance):
    gen = _gen(prompts=("a red square",), steps=4, guidance_scale=guidance)
    model = _load(folder, gen)
    assert model.added_conditions and "StableDiffusionXLPipeline" in model.name
    ours = model.sample(model.unet, model.conditions(gen), gen, seed=7).latents
    with torch.no_grad():
        theirs = model.pipe("a red square", num_inference_steps=4, guidance_scale=guidance or 1.0,
                            latents=initial_noise(1, 8, 7, 4), output_type="latent").images
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_calibration_records_the_added_conditions_and_fp8_deploys_with_them(folder):
    from engine.diffusion import fp8_deploy
    from engine.diffusion.quantize import quantize

    gen = _gen()
    model = _load(folder, gen)
    calib = model.calibration_inputs(gen)
    cond = calib[0][2]
    assert set(cond) == {"encoder_hidden_states", "text_embeds", "time_ids"}
    assert cond["time_ids"][0].tolist() == [32.0, 32.0, 0.0, 0.0, 32.0, 32.0]  # 32x32 images, uncropped
    calibrated = quantize(model.unet, "fp8", calib, call=model.call)
    deployed, counts, left_out = fp8_deploy.deploy_fp8(model.unet, calibrated, "cpu", check_device=False)
    assert counts["linear_fp8"] > 0
    diffs = fp8_deploy.check_deployed(deployed, calibrated, model.unet, left_out, calib[:2], model.call)
    assert diffs["relative_output_diff_vs_calibrated"] < diffs["of_which_16bit_alone"] + fp8_deploy.MAX_DEPLOY_DIFF


def test_an_sdxl_folder_through_run_sweep(folder, tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'sdxl.db'}")
    spec = SweepSpec(model=ModelRef(str(folder)), recipes=(Recipe("int8_sq"),), kind="diffusion",
                     generation=_gen(images_per_condition=2, guidance_scale=2.0), experiment="tiny-sdxl")
    base, int8 = pipeline.run_sweep(spec, store)
    assert "StableDiffusionXLPipeline" in int8.model and int8.status == "done"
    assert math.isfinite(int8.metrics["psnr_db"]) and 0 < int8.metrics["ssim"] <= 1
    assert math.isfinite(int8.metrics["latent_psnr_db"])
    assert {r.id for r in store.list_results()} == {base.id, int8.id}


@pytest.mark.bad_input
def test_an_sdxl_folder_missing_its_second_text_encoder_is_refused(folder, tmp_path):
    broken = tmp_path / "no-te2"
    shutil.copytree(folder, broken)
    index = json.loads((broken / "model_index.json").read_text())
    del index["text_encoder_2"]
    (broken / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="without text_encoder_2. An SDXL-style pipeline needs two text encoders"):
        pipelines.check_source(ModelRef(str(broken)), _gen())


@pytest.mark.bad_input
def test_other_added_conditions_are_refused(folder, tmp_path):
    other = tmp_path / "image-cond"
    shutil.copytree(folder, other)
    config = json.loads((other / "unet" / "config.json").read_text())
    config["addition_embed_type"] = "image"
    (other / "unet" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="added conditions of type 'image'"):
        pipelines.check_source(ModelRef(str(other)), _gen())


def test_the_cli_takes_the_scheduler_and_resolution(folder, capsys):
    from engine.cli import main

    assert main(["sweep", "--model", str(folder), "--prompts", "a cat|a dog", "--scheduler", "default",
                 "--resolution", "64", "--precisions", "fp8", "--print-spec"]) == 0
    generation = json.loads(capsys.readouterr().out)["generation"]
    assert (generation["scheduler"], generation["resolution"], generation["prompts"]) == ("default", 64,
                                                                                         ["a cat", "a dog"])
    with pytest.raises(SystemExit):  # argparse: not one of the schedulers, with the choices listed
        main(["sweep", "--model", str(folder), "--prompts", "a cat", "--scheduler", "karras", "--print-spec"])
    assert "invalid choice: 'karras'" in capsys.readouterr().err
