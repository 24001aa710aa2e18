"""Train the bundled diffusion model, once, offline: `python -m engine.diffusion.train_bundled --out assets/bundled_diffusion`.

What it makes ("trained by this project on scikit-learn digits"):
  - a small class-conditional `diffusers` UNet2DModel (convolutions, attention and linear layers, so
    INT8/FP8 quantization has both Conv2d and Linear layers to work on), trained with a DDPM
    scheduler on scikit-learn's 1,797 handwritten 8x8 digits, upscaled to 16x16 and scaled to [-1, 1];
    labels are dropped to a "no digit" class 10% of the time so classifier-free guidance works;
  - a little CNN digit classifier trained on the same training split and scored on a seeded,
    stratified 10% held-out split that nothing else sees: the judge of the task metric (the share of
    generated images read as the digit asked for).
Outputs: unet/ (config.json + diffusion_pytorch_model.safetensors), scheduler/scheduler_config.json,
classifier.safetensors + classifier.json, bundled.json (label, settings, measured metrics),
train_log.txt (everything printed) and README.md.

Deterministic: one seed, a fixed thread count, torch.use_deterministic_algorithms. About 5-8 minutes
on 2 CPU cores (one thread by default: threads that share a busy core stall each other).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.diffusion import BUNDLED_LABEL
from engine.diffusion.bundled import (DEFAULT_STEPS, NULL_CLASS, NUM_DIGITS, DigitClassifier, generate,
                                      predict_digits, task_accuracy)

IMAGE_SIZE = 16
UNET_CONFIG = dict(
    sample_size=IMAGE_SIZE, in_channels=1, out_channels=1, layers_per_block=1,
    # 16x16 -> 8x8 -> 4x4; self-attention at 4x4 and in the mid block. Twice the channels of the first
    # version (16, 32, 64): there the layers INT8 replaces were 34% of a CPU step (INT8 1.01x); here 53% (1.5x).
    block_out_channels=(32, 64, 128),
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    attention_head_dim=32, norm_num_groups=8, num_class_embeds=NUM_DIGITS + 1,  # + the "no digit" class
)
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                        clip_sample=True)


class Log:
    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, *parts):
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        self.lines.append(line)


def digit_data(seed: int, size: int = IMAGE_SIZE, held_out: float = 0.1):
    """(train_x, train_y, held_x, held_y): sklearn digits upscaled (bilinear) to size x size in [-1, 1],
    split by a seeded, stratified held-out share."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1) * 2 - 1
    y = torch.tensor(d.target, dtype=torch.long)
    tr, ho = train_test_split(np.arange(len(y)), test_size=held_out, random_state=seed, stratify=d.target)
    tr, ho = torch.tensor(np.sort(tr)), torch.tensor(np.sort(ho))
    return x[tr], y[tr], x[ho], y[ho]


def shift(x: torch.Tensor, gen: torch.Generator, most: int = 1) -> torch.Tensor:
    """Each image moved by up to `most` pixels in each direction (edges filled with background)."""
    out = torch.full_like(x, -1.0)
    n, _, h, w = x.shape
    d = torch.randint(-most, most + 1, (n, 2), generator=gen)
    for i in range(n):
        dy, dx = int(d[i, 0]), int(d[i, 1])
        out[i, :, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            x[i, :, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def train_classifier(log, tx, ty, hx, hy, seed, epochs, batch=64):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    clf = DigitClassifier(image_size=tx.shape[-1])
    opt = torch.optim.AdamW(clf.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=epochs * math.ceil(len(tx) / batch))
    for epoch in range(epochs):
        clf.train()
        perm, total = torch.randperm(len(tx), generator=gen), 0.0
        for i in range(0, len(tx), batch):
            idx = perm[i:i + batch]
            xb = shift(tx[idx], gen) + 0.05 * torch.randn(len(idx), *tx.shape[1:], generator=gen)
            loss = F.cross_entropy(clf(xb.clamp(-1, 1)), ty[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if epoch % 5 == 4 or epoch == epochs - 1:
            acc = float((predict_digits(clf, hx) == hy).float().mean())
            log(f"classifier epoch {epoch + 1}/{epochs}: train loss {total / len(tx):.4f}, held-out accuracy {acc:.4f}")
    return clf.eval()


def train_unet(log, tx, ty, seed, steps, batch, lr, label_drop, ema_decay):
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    unet = UNet2DModel(**UNET_CONFIG)
    ema = UNet2DModel(**UNET_CONFIG)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    noise_sched = DDPMScheduler(**SCHEDULER_CONFIG)
    n_params = sum(p.numel() for p in unet.parameters())
    kinds = sorted({type(m).__name__ for m in unet.modules()} & {"Conv2d", "Linear", "Attention"})
    log(f"unet: {n_params:,} parameters; layer types {kinds}; config {json.dumps(UNET_CONFIG)}")
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    warm = min(100, steps // 10)
    lr_at = lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))) if warm else 1.0
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    t0, running = time.time(), []
    unet.train()
    for step in range(steps):
        idx = torch.randint(0, len(tx), (batch,), generator=gen)
        x0, y = tx[idx], ty[idx].clone()
        y[torch.rand(batch, generator=gen) < label_drop] = NULL_CLASS
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (batch,), generator=gen)
        pred = unet(noise_sched.add_noise(x0, noise, t), t, class_labels=y).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - decay)
        running.append(loss.item())
        if (step + 1) % 100 == 0 or step + 1 == steps:
            el = time.time() - t0
            log(f"unet step {step + 1}/{steps} (epoch {(step + 1) * batch / len(tx):.1f}): loss {np.mean(running):.4f}, "
                f"lr {sched.get_last_lr()[0]:.2e}, {el:.0f}s elapsed, ~{el / (step + 1) * (steps - step - 1):.0f}s left")
            running = []
    return ema.eval(), noise_sched


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("assets/bundled_diffusion"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--unet-steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--label-drop", type=float, default=0.1)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--classifier-epochs", type=int, default=20)
    ap.add_argument("--eval-images", type=int, default=200)
    ap.add_argument("--eval-steps", type=int, default=DEFAULT_STEPS)
    args = ap.parse_args(argv)

    import diffusers
    import safetensors
    import sklearn
    from safetensors.torch import save_file

    t_start = time.time()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    log = Log()
    log(f"Tradeoff Lab bundled diffusion model: {BUNDLED_LABEL}")
    log(f"seed {args.seed}; threads {args.threads}; settings {json.dumps({k: str(v) for k, v in vars(args).items()})}")
    log(f"python {platform.python_version()}, torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"scikit-learn {sklearn.__version__}, safetensors {safetensors.__version__}, numpy {np.__version__}, "
        f"{platform.platform()}")

    tx, ty, hx, hy = digit_data(args.seed)
    log(f"data: sklearn.datasets.load_digits, 8x8 upscaled to {IMAGE_SIZE}x{IMAGE_SIZE} (bilinear), scaled to [-1, 1]; "
        f"train {len(tx)}, held out {len(hx)} (stratified, seed {args.seed}; used only to score the classifier)")

    t = time.time()
    clf = train_classifier(log, tx, ty, hx, hy, args.seed, args.classifier_epochs)
    held_acc = float((predict_digits(clf, hx) == hy).float().mean())
    log(f"classifier held-out accuracy: {held_acc:.4f} ({len(hx)} images), trained in {time.time() - t:.0f}s")

    t = time.time()
    unet, noise_sched = train_unet(log, tx, ty, args.seed, args.unet_steps, args.batch, args.lr, args.label_drop, args.ema)
    unet_s = time.time() - t
    log(f"unet trained in {unet_s:.0f}s ({args.unet_steps} steps of {args.batch}); the EMA weights are saved")

    labels = [i % NUM_DIGITS for i in range(args.eval_images)]
    metrics = {}
    for guidance in (None, 2.0):
        t = time.time()
        imgs = generate(unet, noise_sched, labels, steps=args.eval_steps, seed=args.seed, guidance_scale=guidance,
                        batch_size=50)
        acc = task_accuracy(clf, imgs, labels)
        key = "task_accuracy" if guidance is None else f"task_accuracy_guidance_{guidance:g}"
        metrics[key] = round(acc, 4)
        log(f"task metric ({key}): {acc:.4f} of {len(labels)} generated images read as the requested digit "
            f"(DDIM {args.eval_steps} steps, seed {args.seed}, guidance {guidance}); {time.time() - t:.1f}s")

    out = args.out
    (out / "unet").mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(str(out / "unet"), safe_serialization=True)
    noise_sched.save_pretrained(str(out / "scheduler"))
    save_file({k: v.contiguous() for k, v in clf.state_dict().items()}, str(out / "classifier.safetensors"))
    (out / "classifier.json").write_text(json.dumps(
        {"label": f"digit classifier {BUNDLED_LABEL}", "class": "engine.diffusion.bundled.DigitClassifier",
         "architecture": clf.config, "input": f"1x{IMAGE_SIZE}x{IMAGE_SIZE} in [-1, 1]",
         "held_out_accuracy": round(held_acc, 4), "held_out_images": len(hx)}, indent=2) + "\n")
    info = {"label": BUNDLED_LABEL, "kind": "class-conditional DDPM (no VAE), sampled with DDIM",
            "data": "sklearn.datasets.load_digits (1,797 8x8 images) upscaled to 16x16, scaled to [-1, 1]",
            "image_size": IMAGE_SIZE, "channels": 1, "num_classes": NUM_DIGITS, "null_class": NULL_CLASS,
            "default_steps": DEFAULT_STEPS, "seed": args.seed, "train_images": len(tx), "held_out_images": len(hx),
            "unet_steps": args.unet_steps, "batch": args.batch,
            "classifier_held_out_accuracy": round(held_acc, 4),
            "task_metric": "share of generated images the bundled classifier reads as the requested digit",
            "eval_images": len(labels), "eval_steps": args.eval_steps, **metrics,
            "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__, "scikit-learn": sklearn.__version__}}
    (out / "bundled.json").write_text(json.dumps(info, indent=2) + "\n")
    (out / "README.md").write_text(
        f"# Bundled diffusion model ({BUNDLED_LABEL})\n\n"
        "A small class-conditional diffusers `UNet2DModel` that draws 16x16 handwritten digits 0-9, and a small CNN\n"
        "digit classifier used as its task metric (share of generated images read as the requested digit).\n"
        "Made by `python -m engine.diffusion.train_bundled --out assets/bundled_diffusion` (see train_log.txt);\n"
        "loaded offline by `engine.diffusion.bundled.load_bundled()`. Class 10 is the unconditional class\n"
        "(classifier-free guidance). Data: scikit-learn's bundled copy of the UCI optical handwritten digits.\n\n"
        f"- classifier held-out accuracy: {held_acc:.4f} ({len(hx)} images)\n"
        + "".join(f"- {k}: {v} ({len(labels)} images, DDIM {args.eval_steps} steps)\n" for k, v in metrics.items()))
    for f in out.rglob("*.safetensors"):  # safetensors writes them owner-only
        f.chmod(0o644)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log(f"wrote {out} ({size / 1e6:.2f} MB); total wall time {time.time() - t_start:.0f}s")
    (out / "train_log.txt").write_text("\n".join(log.lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
