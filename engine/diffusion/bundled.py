"""The bundled diffusion model, loaded offline from the shipped assets (safetensors only).

A small class-conditional `diffusers` UNet2DModel (no VAE: it denoises 16x16 one-channel images
directly, so its latents are its images), trained by this project on scikit-learn's handwritten
digits by `python -m engine.diffusion.train_bundled`, plus a small digit classifier trained on the
same data. The model's task metric is the share of generated images the classifier reads as the
digit that was asked for (`task_accuracy`).

    b = load_bundled()
    images = generate(b.unet, b.scheduler, labels=[0, 1, 2], steps=20, seed=0)
    task_accuracy(b.classifier, images, [0, 1, 2])

Class 10 is the "no digit" class the UNet was trained with (labels dropped 10% of the time), so
`generate(..., guidance_scale=2.0)` runs classifier-free guidance.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.diffusion import BUNDLED_DIR, BUNDLED_LABEL
from engine.errors import ModelLoadError, SpecError

NUM_DIGITS = 10
NULL_CLASS = 10  # the unconditional class of classifier-free guidance
DEFAULT_STEPS = 20  # DDIM steps


class GenerationSettingError(SpecError):
    """A generation request that cannot run (no labels, a label that is not a digit, steps < 1)."""


class DigitClassifier(nn.Module):
    """A little CNN reading a digit from a [-1, 1] one-channel image (the task metric's judge)."""

    def __init__(self, image_size: int = 16, channels: Sequence[int] = (16, 32, 64), hidden: int = 64,
                 num_classes: int = NUM_DIGITS, dropout: float = 0.25):
        super().__init__()
        c1, c2, c3 = channels
        self.config = {"image_size": image_size, "channels": list(channels), "hidden": hidden,
                       "num_classes": num_classes, "dropout": dropout}
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c3 * side * side, hidden),
                                  nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class BundledDiffusion:
    """The loaded bundled model: UNet, DDIM scheduler, classifier and what the assets say about them."""

    unet: nn.Module
    scheduler: object  # diffusers DDIMScheduler
    classifier: DigitClassifier
    image_size: int
    path: Path
    label: str = BUNDLED_LABEL
    default_steps: int = DEFAULT_STEPS
    num_classes: int = NUM_DIGITS
    info: dict = field(default_factory=dict)  # bundled.json: source, seed, measured metrics


def bundled_path() -> Path:
    from engine.paths import asset

    return asset(BUNDLED_DIR)


def _diffusers():
    try:
        import diffusers
    except ImportError as exc:  # pragma: no cover - the extra is installed in the test setup
        raise ModelLoadError("The bundled diffusion model needs the `diffusers` package: "
                             "pip install 'tradeoff-lab[diffusion]'.") from exc
    return diffusers


def ddim_from(scheduler_or_config) -> object:
    """A fresh DDIM scheduler from any diffusers scheduler (or its config): the one generation uses."""
    diffusers = _diffusers()
    config = getattr(scheduler_or_config, "config", scheduler_or_config)
    return diffusers.DDIMScheduler.from_config(dict(config))


def load_classifier(folder: Path, device: str = "cpu") -> DigitClassifier:
    from safetensors.torch import load_file

    config = json.loads((folder / "classifier.json").read_text())
    clf = DigitClassifier(**config["architecture"])
    clf.load_state_dict(load_file(str(folder / "classifier.safetensors")))
    return clf.to(device).eval()


def load_bundled(device: str = "cpu", path: str | Path | None = None) -> BundledDiffusion:
    """Load the shipped UNet, scheduler and classifier from the assets folder; nothing is downloaded."""
    folder = Path(path) if path is not None else bundled_path()
    needed = ["unet/config.json", "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json",
              "classifier.json", "classifier.safetensors", "bundled.json"]
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        raise ModelLoadError(f"The bundled diffusion model is incomplete in {folder} (missing: {', '.join(missing)}). "
                             "Reinstall tradeoff-lab, or rebuild it with "
                             f"`python -m engine.diffusion.train_bundled --out {folder}`.")
    diffusers = _diffusers()
    unet = diffusers.UNet2DModel.from_pretrained(str(folder / "unet"), use_safetensors=True, local_files_only=True)
    unet = unet.to(device).eval()
    scheduler = ddim_from(diffusers.DDIMScheduler.load_config(str(folder / "scheduler")))
    info = json.loads((folder / "bundled.json").read_text())
    return BundledDiffusion(unet=unet, scheduler=scheduler, classifier=load_classifier(folder, device),
                            image_size=int(unet.config.sample_size), path=folder,
                            label=info.get("label", BUNDLED_LABEL), default_steps=int(info.get("default_steps", DEFAULT_STEPS)),
                            info=info)


def check_request(labels: Sequence[int], steps: int, guidance_scale: float | None = None,
                  num_train_timesteps: int = 1000) -> list[int]:
    """The labels as a list of ints, or a GenerationSettingError that says what to change."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps <= 0:
        raise GenerationSettingError(f"steps must be a whole number of at least 1 (20 is a good default), got {steps!r}.")
    if steps > num_train_timesteps:
        raise GenerationSettingError(f"steps can be at most {num_train_timesteps} (the scheduler's training "
                                     f"timesteps), got {steps}; use fewer steps.")
    labels = list(labels)
    if not labels:
        raise GenerationSettingError("No labels to generate: give at least one digit from 0 to 9.")
    bad = [x for x in labels if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or not 0 <= x < NUM_DIGITS]
    if bad:
        raise GenerationSettingError(f"Labels must be digits from 0 to 9, got {bad[:5]!r}; "
                                     "the bundled model draws handwritten digits 0-9.")
    if guidance_scale is not None and not (isinstance(guidance_scale, (int, float)) and guidance_scale >= 1.0):
        raise GenerationSettingError(f"guidance_scale must be at least 1.0 (or None for no guidance), got {guidance_scale!r}.")
    return [int(x) for x in labels]


def initial_noise(n: int, size: int, seed: int, channels: int = 1) -> torch.Tensor:
    """The starting noise for n images: drawn on the CPU, so a seed gives the same start on any device."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(n, channels, size, size, generator=gen, dtype=torch.float32)


@torch.no_grad()
def generate(unet: nn.Module, scheduler, labels: Sequence[int], steps: int = DEFAULT_STEPS, seed: int = 0,
             guidance_scale: float | None = None, batch_size: int | None = None) -> torch.Tensor:
    """Images in [-1, 1], shape (len(labels), C, H, W), float32 on the CPU; one per requested digit.

    Deterministic DDIM (eta 0): the same seed gives the same images. Image i's starting noise depends
    only on the seed and i, so batching (`batch_size`) does not change what is drawn. With
    `guidance_scale` > 1 each step also runs the unconditional class (classifier-free guidance).
    Since this model has no VAE, the returned images are also its final latents.
    The scheduler passed in is not changed (a fresh DDIM copy of its config runs the steps)."""
    cfg = unet.config
    labels = check_request(labels, steps, guidance_scale, int(scheduler.config.num_train_timesteps))
    param = next(unet.parameters())
    device, dtype = param.device, param.dtype
    noise = initial_noise(len(labels), int(cfg.sample_size), seed, int(cfg.in_channels))
    batch = batch_size or len(labels)
    guided = guidance_scale is not None and guidance_scale != 1.0
    out = []
    for start in range(0, len(labels), batch):
        sched = ddim_from(scheduler)
        sched.set_timesteps(steps)
        x = noise[start:start + batch].to(device)
        y = torch.tensor(labels[start:start + batch], device=device)
        for t in sched.timesteps:
            xin = x.to(dtype)
            if guided:
                both = unet(torch.cat([xin, xin]), t, class_labels=torch.cat([y, torch.full_like(y, NULL_CLASS)])).sample
                cond, uncond = both.float().chunk(2)
                eps = uncond + guidance_scale * (cond - uncond)
            else:
                eps = unet(xin, t, class_labels=y).sample.float()
            x = sched.step(eps, t, x, eta=0.0).prev_sample
        out.append(x.float().clamp(-1, 1).cpu())
    return torch.cat(out)


@torch.no_grad()
def predict_digits(classifier: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    param = next(classifier.parameters())
    classifier.eval()
    preds = [classifier(images[i:i + batch_size].to(param.device, param.dtype)).argmax(-1).cpu()
             for i in range(0, len(images), batch_size)]
    return torch.cat(preds)


def task_accuracy(classifier: nn.Module, images: torch.Tensor, labels: Sequence[int]) -> float:
    """The share of images the classifier reads as the digit asked for (0..1)."""
    labels = list(labels)
    if len(images) != len(labels) or not labels:
        raise GenerationSettingError(f"task_accuracy needs one label per image, got {len(images)} images "
                                     f"and {len(labels)} labels.")
    preds = predict_digits(classifier, images)
    return float((preds == torch.tensor(labels)).float().mean())


def _to_uint8(images) -> np.ndarray:
    arr = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, dtype=np.float32)
    if arr.ndim == 3:  # (N, H, W)
        arr = arr[:, None]
    if arr.ndim != 4:
        raise GenerationSettingError(f"Images must be shaped (N, C, H, W), got {arr.shape}.")
    return np.clip(np.rint((arr + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(rows, pad: int = 1, scale: int = 1, cols: int | None = None, background: int = 128) -> np.ndarray:
    """A uint8 picture of images in [-1, 1]: one row per entry of `rows` (e.g. one per recipe), its
    images side by side (e.g. the samples). `rows` may also be one (N, C, H, W) batch, cut into rows
    of `cols` images. Shape (H, W) for one-channel images, (H, W, 3) for RGB; `scale` repeats pixels."""
    if isinstance(rows, (torch.Tensor, np.ndarray)) and np.ndim(rows) == 4:
        batch = _to_uint8(rows)
        cols = cols or len(batch)
        rows = [batch[i:i + cols] for i in range(0, len(batch), cols)]
    else:
        rows = [_to_uint8(r) for r in rows]
    if not rows or not any(len(r) for r in rows):
        raise GenerationSettingError("No images to put in the grid.")
    c, h, w = rows[0].shape[1:]
    ncols = max(len(r) for r in rows)
    hs, ws = h * scale, w * scale
    grid = np.full((c, pad + len(rows) * (hs + pad), pad + ncols * (ws + pad)), background, dtype=np.uint8)
    for i, row in enumerate(rows):
        if row.shape[1:] != (c, h, w):
            raise GenerationSettingError(f"All images in a grid must share one shape, got {row.shape[1:]} and {(c, h, w)}.")
        for j, img in enumerate(row):
            if scale > 1:
                img = img.repeat(scale, axis=1).repeat(scale, axis=2)
            y, x = pad + i * (hs + pad), pad + j * (ws + pad)
            grid[:, y:y + hs, x:x + ws] = img
    return grid[0] if c == 1 else np.moveaxis(grid, 0, -1)
