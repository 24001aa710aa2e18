"""The bundled diffusion model (trained by this project on scikit-learn digits): it loads offline from
the shipped assets, draws the digits it is asked for (judged by the bundled classifier), is
deterministic per seed, and refuses bad requests with messages that say what to do."""

import json
import sys
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from engine.diffusion import BUNDLED_LABEL  # noqa: E402
from engine.diffusion.bundled import (GenerationSettingError, generate, image_grid, load_bundled,  # noqa: E402
                                      task_accuracy)
from engine.errors import ModelLoadError, TlabError  # noqa: E402

LABELS = [d for d in range(10) for _ in range(2)]  # 2 per digit
STEPS = 10


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a 2-core machine that other programs keep busy, two threads stall each
    other (a 1 s generation took 18 s), as engine.cpu_threads explains."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bundled(one_thread):
    return load_bundled()


@pytest.fixture(scope="module")
def images(bundled):
    return generate(bundled.unet, bundled.scheduler, LABELS, steps=STEPS, seed=0)


def test_importing_the_package_stays_light():
    code = "import sys, engine.diffusion; print('torch' in sys.modules, 'diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_loads_offline_from_the_assets(bundled):
    assert bundled.label == BUNDLED_LABEL == "trained by this project on scikit-learn digits"
    assert bundled.image_size == 16 and bundled.num_classes == 10
    assert type(bundled.scheduler).__name__ == "DDIMScheduler"
    files = {p.relative_to(bundled.path).as_posix() for p in bundled.path.rglob("*") if p.is_file()}
    assert not any(f.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl")) for f in files), files  # safetensors only
    assert sum(p.stat().st_size for p in bundled.path.rglob("*") if p.is_file()) < 16e6  # 2.7 M float32 weights
    layer_types = {type(m).__name__ for m in bundled.unet.modules()}
    assert {"Conv2d", "Linear"} <= layer_types  # what INT8/FP8 quantization works on
    info = json.loads((bundled.path / "bundled.json").read_text())
    assert info["classifier_held_out_accuracy"] > 0.95


def test_generated_digits_are_read_as_the_requested_digit(bundled, images):
    assert images.shape == (len(LABELS), 1, 16, 16) and images.dtype == torch.float32
    assert float(images.min()) >= -1 and float(images.max()) <= 1
    # Measured: 0.965 on 200 images with 20 steps at training time (train_log.txt), 1.0 on these 20 with
    # 10 steps for seeds 0-3; an untrained UNet scores 0.0-0.1 (below).
    assert task_accuracy(bundled.classifier, images, LABELS) >= 0.8


def test_an_untrained_unet_scores_near_chance(bundled):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    untrained = UNet2DModel.from_config(bundled.unet.config).eval()
    noise_images = generate(untrained, bundled.scheduler, LABELS, steps=STEPS, seed=0)
    assert task_accuracy(bundled.classifier, noise_images, LABELS) <= 0.35


def test_same_seed_same_images_other_seed_other_images(bundled, images):
    again = generate(bundled.unet, bundled.scheduler, LABELS, steps=STEPS, seed=0)
    assert torch.equal(again, images)
    other = generate(bundled.unet, bundled.scheduler, LABELS, steps=STEPS, seed=1)
    assert (other - images).abs().mean() > 0.05


def test_batching_does_not_change_the_images(bundled, images):
    parts = generate(bundled.unet, bundled.scheduler, LABELS, steps=STEPS, seed=0, batch_size=8)
    assert torch.allclose(parts, images, atol=1e-4)


def test_guidance_runs(bundled):
    labels = [3, 7]
    guided = generate(bundled.unet, bundled.scheduler, labels, steps=5, seed=0, guidance_scale=2.0)
    plain = generate(bundled.unet, bundled.scheduler, labels, steps=5, seed=0)
    assert guided.shape == plain.shape and not torch.equal(guided, plain)


@pytest.mark.parametrize("kwargs, words", [
    (dict(labels=[1], steps=0), "at least 1"),
    (dict(labels=[1], steps=-3), "at least 1"),
    (dict(labels=[1], steps=2.5), "whole number"),
    (dict(labels=[], steps=5), "at least one digit"),
    (dict(labels=[10], steps=5), "digits from 0 to 9"),
    (dict(labels=[-1, 3], steps=5), "digits from 0 to 9"),
    (dict(labels=[1], steps=5, guidance_scale=0.5), "guidance_scale"),
])
@pytest.mark.bad_input
def test_bad_requests_say_what_to_do(bundled, kwargs, words):
    with pytest.raises(GenerationSettingError, match=words) as exc:
        generate(bundled.unet, bundled.scheduler, seed=0, **kwargs)
    assert isinstance(exc.value, TlabError) and isinstance(exc.value, ValueError)


def test_task_accuracy_needs_one_label_per_image(bundled, images):
    with pytest.raises(GenerationSettingError, match="one label per image"):
        task_accuracy(bundled.classifier, images, LABELS[:-1])


def test_missing_assets_say_how_to_rebuild(tmp_path):
    with pytest.raises(ModelLoadError, match="train_bundled"):
        load_bundled(path=tmp_path)


def test_image_grid(images):
    rows = [images[:5], images[5:10]]  # e.g. two recipes, five samples each
    grid = image_grid(rows, pad=1)
    assert grid.dtype == np.uint8 and grid.shape == (1 + 2 * 17, 1 + 5 * 17)
    assert np.array_equal(grid[1:17, 1:17], np.rint((images[0, 0].numpy() + 1) * 127.5).astype(np.uint8))
    assert image_grid(images, cols=10, scale=2).shape == (1 + 2 * 33, 1 + 10 * 33)
    rgb = image_grid([torch.zeros(2, 3, 4, 4)], pad=0)
    assert rgb.shape == (4, 8, 3) and (rgb == 128).all()
