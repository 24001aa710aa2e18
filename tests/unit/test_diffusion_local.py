"""Local diffusers pipelines (engine.diffusion.local, engine.diffusion.pipelines): which folders load,
which are refused before any work and with what advice, and what the samplers draw. The pipelines are
tiny random-weight ones built offline (tests/diffusion_tiny.py)."""

import dataclasses
import json
import shutil

import pytest

pytest.importorskip("diffusers")

from engine.diffusion import local, pipelines  # noqa: E402
from engine.errors import ModelLoadError, SpecError, TlabError  # noqa: E402
from engine.spec import GenerationSpec, ModelRef  # noqa: E402
from tests import diffusion_tiny  # noqa: E402

LABELS = GenerationSpec(labels=(0, 2), images_per_condition=1, steps=3, calib_images=2)
PROMPTS = GenerationSpec(labels=(), prompts=("a red circle", "a blue square"), images_per_condition=1, steps=3,
                         calib_images=2)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-pipelines")
    return {"labels": diffusion_tiny.class_conditional(root / "cc"), "prompts": diffusion_tiny.text_to_image(root / "t2i")}


@pytest.fixture
def copy_of(folders, tmp_path):
    def make(kind):
        return shutil.copytree(folders[kind], tmp_path / kind)
    return make


@pytest.fixture(scope="module")
def loaded(folders):
    return {k: pipelines.load(pipelines.check_source(ModelRef(str(f)), LABELS if k == "labels" else PROMPTS), "cpu")
            for k, f in folders.items()}


# --- layouts that load ----------------------------------------------------------------------------

def test_a_bare_unet_folder_is_class_conditional(folders):
    layout = local.locate(ModelRef(str(folders["labels"])))
    assert (layout.conditioning, layout.unet_class, layout.is_pipeline) == ("labels", "UNet2DModel", False)
    assert layout.scheduler_dir == folders["labels"] / "scheduler"
    assert local.looks_like_diffusion(str(folders["labels"]))


def test_a_stable_diffusion_folder_takes_prompts(folders):
    layout = local.locate(ModelRef(str(folders["prompts"])))
    assert (layout.conditioning, layout.unet_class, layout.pipeline_class) == \
        ("prompts", "UNet2DConditionModel", "StableDiffusionPipeline")
    assert local.looks_like_diffusion(str(folders["prompts"]))


def test_a_hub_id_goes_through_the_same_folder_checks(folders, copy_of):
    fetched = []
    bad = copy_of("prompts")
    (bad / "unet" / "diffusion_pytorch_model.safetensors").rename(bad / "unet" / "diffusion_pytorch_model.bin")

    def fetch(repo, revision, patterns):
        fetched.append((repo, revision, tuple(patterns)))
        return str(folders["prompts"] if repo == "org/tiny" else bad)

    layout = local.locate(ModelRef("org/tiny", revision="main"), fetch)
    assert layout.hf_id == "org/tiny" and layout.name == "org/tiny" and layout.conditioning == "prompts"
    assert fetched[0][:2] == ("org/tiny", "main") and "*.safetensors" in fetched[0][2]
    assert not any(p.endswith((".bin", ".py")) for p in fetched[0][2])  # never asks for pickles or code
    with pytest.raises(ModelLoadError, match="pickled"):
        local.locate(ModelRef("org/pickled"), fetch)


def test_a_language_model_folder_is_not_taken_for_diffusion(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    assert not local.looks_like_diffusion(str(tmp_path))
    assert not local.looks_like_diffusion("bundled")


# --- refused before any work ----------------------------------------------------------------------

def _refused(ref, match, gen=LABELS, error=ModelLoadError):
    with pytest.raises(error, match=match) as info:
        pipelines.check_source(ref, gen)
    assert isinstance(info.value, TlabError)
    return str(info.value)


def test_not_a_folder_nor_a_hub_id(tmp_path):
    msg = _refused(ModelRef(str(tmp_path / "missing")), "not a local folder or a Hugging Face id")
    assert "bundled-diffusion" in msg


def test_a_pipeline_without_a_denoiser(copy_of):
    folder = copy_of("prompts")
    index = json.loads((folder / "model_index.json").read_text())
    del index["unet"]
    (folder / "model_index.json").write_text(json.dumps(index))
    shutil.rmtree(folder / "unet")
    assert "needs unet/ or transformer/" in _refused(ModelRef(str(folder)), "no denoiser", PROMPTS)


def test_a_pipeline_whose_unet_folder_is_missing(copy_of):
    folder = copy_of("prompts")
    shutil.rmtree(folder / "unet")
    _refused(ModelRef(str(folder)), "incomplete", PROMPTS)


def test_an_empty_folder(tmp_path):
    assert "unet/ and scheduler/" in _refused(ModelRef(str(tmp_path)), "no diffusion denoiser")


@pytest.mark.parametrize("component", ["unet", "vae", "text_encoder"])
def test_pickle_only_weights(copy_of, component):
    folder = copy_of("prompts")
    for f in (folder / component).glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    msg = _refused(ModelRef(str(folder)), "only pickled weights", PROMPTS)
    assert component in msg and "safe_serialization=True" in msg


def test_pickle_only_bare_unet(copy_of):
    folder = copy_of("labels")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").rename(folder / "unet" / "diffusion_pytorch_model.bin")
    _refused(ModelRef(str(folder)), "never loaded")


def test_a_bare_unet_without_a_scheduler(copy_of):
    folder = copy_of("labels")
    shutil.rmtree(folder / "scheduler")
    _refused(ModelRef(str(folder)), "no scheduler")


def test_custom_pipeline_code_needs_the_opt_in(copy_of):
    folder = copy_of("prompts")
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = ["my_pipeline", "MyPipeline"]
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "my_pipeline.py").write_text("raise SystemExit('this must not run')\n")
    msg = _refused(ModelRef(str(folder)), "needs its own code", PROMPTS)
    assert "custom pipeline class" in msg and "my_pipeline.py" in msg and "--trust-remote-code" in msg
    layout = local.locate(ModelRef(str(folder), trust_remote_code=True))  # opted in: the files pass
    assert layout.conditioning == "prompts"


def test_a_component_from_another_library_needs_the_opt_in(copy_of):
    folder = copy_of("prompts")
    index = json.loads((folder / "model_index.json").read_text())
    index["vae"] = ["my_package", "MyAutoencoder"]
    (folder / "model_index.json").write_text(json.dumps(index))
    _refused(ModelRef(str(folder)), "comes from 'my_package'", PROMPTS)


def test_labels_to_a_text_to_image_pipeline(folders):
    gen = GenerationSpec(labels=(1,), prompts=("a cat",))
    _refused(ModelRef(str(folders["prompts"])), "takes prompts, not class labels", gen, SpecError)


def test_an_empty_prompt_list_for_text_to_image(folders):
    _refused(ModelRef(str(folders["prompts"])), "give at least one prompt", LABELS, SpecError)


def test_prompts_to_a_class_conditional_pipeline(folders):
    _refused(ModelRef(str(folders["labels"])), "takes class labels, not text prompts", PROMPTS, SpecError)


def test_zero_steps_and_empty_prompts_are_refused_by_the_spec():
    with pytest.raises(SpecError, match="steps must be a positive whole number"):
        GenerationSpec(labels=(), prompts=("a",), steps=0)
    with pytest.raises(SpecError, match="non-empty text"):
        GenerationSpec(labels=(), prompts=("  ",))


# --- settings against the loaded model ------------------------------------------------------------

def test_resolution_must_divide_by_the_vae_and_unet_factors(loaded):
    t2i = loaded["prompts"]
    assert (t2i.vae_factor, pipelines.unet_factor(t2i.unet), t2i.image_side) == (4, 2, 32)
    with pytest.raises(SpecError, match=r"not divisible by 8, 4 \(VAE\) x 2 \(UNet\); use a multiple of 8"):
        t2i.check(dataclasses.replace(PROMPTS, resolution=36))
    t2i.check(GenerationSpec(labels=(), prompts=("a",), resolution=48))  # a multiple of 8 is fine
    with pytest.raises(SpecError, match="not divisible by 2"):
        loaded["labels"].check(GenerationSpec(labels=(0,), resolution=15))


def test_class_conditional_limits(loaded, monkeypatch):
    cc = loaded["labels"]
    with pytest.raises(SpecError, match="classes 0 to 2"):
        cc.check(GenerationSpec(labels=(0, 5)))
    with pytest.raises(SpecError, match="unconditional class"):
        cc.check(GenerationSpec(labels=(0,), guidance_scale=3.0))
    monkeypatch.setattr(cc, "num_train_timesteps", 50)  # as if its scheduler was trained on 50 timesteps
    with pytest.raises(SpecError, match="at most 50"):
        cc.check(GenerationSpec(labels=(0,), steps=51))


# --- sampling -------------------------------------------------------------------------------------

def test_same_seed_same_images_and_latents(loaded):
    t2i = loaded["prompts"]
    conds = t2i.conditions(PROMPTS)
    a = t2i.sample(t2i.unet, conds, PROMPTS, seed=5)
    b = t2i.sample(t2i.unet, conds, PROMPTS, seed=5)
    c = t2i.sample(t2i.unet, conds, PROMPTS, seed=6)
    assert a.images.shape == (2, 3, 32, 32) and a.latents.shape == (2, 4, 8, 8)
    assert float(a.images.min()) >= -1 and float(a.images.max()) <= 1
    assert (a.images == b.images).all() and (a.latents == b.latents).all()
    assert not (a.latents == c.latents).all()


def test_guidance_changes_what_is_drawn(loaded):
    t2i = loaded["prompts"]
    guided = GenerationSpec(labels=(), prompts=PROMPTS.prompts, images_per_condition=1, steps=3, guidance_scale=4.0)
    conds = t2i.conditions(PROMPTS)
    plain = t2i.sample(t2i.unet, conds, PROMPTS, seed=0).latents
    assert not (t2i.sample(t2i.unet, conds, guided, seed=0).latents == plain).all()


def test_calibration_records_the_text_condition(loaded):
    t2i = loaded["prompts"]
    calib = t2i.calibration_inputs(PROMPTS)
    assert len(calib) == PROMPTS.steps  # 2 calibration images in one batch, one denoiser call per step
    x, t, cond = calib[0]
    assert x.shape == (2, 4, 8, 8) and cond.shape == (2, 16, 16)  # (images, tokens, hidden)


def test_class_conditional_samples_without_a_vae(loaded):
    cc = loaded["labels"]
    out = cc.sample(cc.unet, cc.conditions(LABELS), LABELS, seed=0)
    assert out.images.shape == (2, 1, 16, 16) and out.latents is None
    calib = cc.calibration_inputs(LABELS)
    assert len(calib) == LABELS.steps and calib[0][2].tolist() == [0, 2]


@pytest.mark.parametrize("scheduler", ["ddpm", "euler", "default"])
def test_other_schedulers_run_and_stay_seeded(loaded, scheduler):
    cc = loaded["labels"]
    gen = GenerationSpec(labels=(1,), images_per_condition=2, steps=3, scheduler=scheduler)
    a = cc.sample(cc.unet, cc.conditions(gen), gen, seed=3).images
    assert (a == cc.sample(cc.unet, cc.conditions(gen), gen, seed=3).images).all()
    assert cc.describe(gen)["sampler"] in ("DDPMScheduler", "EulerDiscreteScheduler", "DDIMScheduler")
