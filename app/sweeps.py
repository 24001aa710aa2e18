"""Sweep jobs: the SweepSpec the Experiment page's choices describe, as the payload
engine.pipeline:run_sweep_job takes, and the demo sweep. Pure functions except `queue_demo`."""

from __future__ import annotations

import itertools
import time

from engine import registry
from engine.pipeline import sweep_payload
from engine.spec import (BUNDLED_DIFFUSION, BUNDLED_MODEL, DataSpec, GenerationSpec, ModelRef, Recipe, SweepSpec,
                         TaskAccuracySpec, Workload)

# FP8 has accuracy only on a CPU (no kernels); INT8 SmoothQuant and INT4 AWQ run on real CPU kernels, so with
# the baseline the chart has three measured points. AWQ's search grows with the calibration tokens: 16 short
# sequences keep it to seconds.
DEMO_PRECISIONS = ("fp8", "int8_sq", "int4_awq")
DEMO_DATA = {"calib_size": 16, "calib_seq_len": 128, "eval_tokens": 1024, "eval_seq_len": 256}
DEMO_WORKLOAD = {"input_len": 64, "output_len": 32, "batch_sizes": [1]}
DEMO_DESCRIPTION = (
    "The demo calibrates the **bundled model** (SmolLM2-135M, shipped with the app, no download) in "
    "**FP8**, **INT8 SmoothQuant** and **INT4 AWQ** on a small slice of the bundled text (16 calibration sequences of 128 "
    "tokens, 1,024 evaluation tokens), measures each one's perplexity against the BF16 baseline, and "
    "times the ones this machine has fast kernels for (batch 1, 64 tokens in, 32 out); the others get "
    "accuracy only. It takes a few minutes on a laptop CPU; you can watch it on the Jobs page."
)

DIFFUSION_MODEL_LABEL = "Bundled digits diffusion model (trained by this project on scikit-learn digits)"
DIFFUSION_DEMO_PRECISIONS = ("int8_sq", "fp8")
DIFFUSION_DEMO_GENERATION = {"labels": list(range(10)), "images_per_condition": 2, "steps": 10,
                             "calib_images": 8}
DIFFUSION_DEMO_BATCH_SIZES = (8,)
DIFFUSION_IMAGE_SIDE = 16  # the bundled model's images are 16x16 (the workload's input_len is the image side)
DIFFUSION_DEMO_DESCRIPTION = (
    "The diffusion demo quantizes the **bundled digits model** (a small image diffusion UNet trained by this "
    "project on scikit-learn digits, shipped with the app) to **INT8 SmoothQuant** and **FP8**, calibrated on "
    "the denoising steps of 8 images. It draws 2 images of each digit 0-9 in 10 steps with the same seeds as the "
    "unquantized baseline, scores them (the share a digit classifier reads as the digit asked for, PSNR and "
    "SSIM against the baseline's images) and times the denoiser step at batch 8 where this machine has fast "
    "kernels. About a minute on a laptop CPU."
)


def experiment_name(prefix: str = "sweep") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def recipe_grid(precisions: list[str], sparsities: list[str], kv_caches: list[str]) -> list[Recipe]:
    """Every combination, baseline excluded (the pipeline always runs the baseline itself)."""
    grid = [Recipe(p, s, k) for p, s, k in itertools.product(precisions, sparsities or ["none"],
                                                             kv_caches or ["auto"])]
    return [r for r in grid if not r.is_baseline]


def sweep_spec(experiment: str, model: ModelRef, recipes: list[Recipe], data: DataSpec,
               workload: Workload | None, backend: str = "torch", tasks: TaskAccuracySpec | None = None) -> SweepSpec:
    """The sweep the Experiment page describes (validated: raises TlabError with what to fix)."""
    return SweepSpec(model=model, recipes=tuple(recipes), data=data, workload=workload, runtime=backend,
                     experiment=experiment, tasks=tasks)


def sweep_jobs(experiment: str, model: ModelRef, recipes: list[Recipe], data: DataSpec,
               workload: Workload | None, backend: str, tasks: TaskAccuracySpec | None = None) -> list[tuple[dict, str]]:
    """(payload, title) of each job a sweep needs: one. The pipeline times what the backend can time
    here and keeps accuracy only (with the reason) for the rest, so nothing gets a simulated speed."""
    spec = sweep_spec(experiment, model, recipes, data, workload, backend, tasks)
    return [(sweep_payload(spec), sweep_title(model, recipes, experiment))]


def sweep_title(model: ModelRef, recipes: list[Recipe], experiment: str | None = None) -> str:
    model_name = "bundled model" if model.source == BUNDLED_MODEL else model.source
    labels = ", ".join(r.label for r in recipes[:4]) + (f" and {len(recipes) - 4} more" if len(recipes) > 4 else "")
    return (f"{experiment} · " if experiment else "") + f"{model_name}: {labels}"


def demo_jobs(choices, experiment: str | None = None) -> list[tuple[dict, str]]:
    """(payload, title) of the demo's job, given engine.devices.precision_choices(...): the demo
    precisions this device can calibrate, timed where it has fast kernels for them."""
    by_name = {c.name: c for c in choices}
    precisions = [p for p in DEMO_PRECISIONS if p in by_name and by_name[p].runnable]
    workload = Workload(DEMO_WORKLOAD["input_len"], DEMO_WORKLOAD["output_len"],
                        tuple(DEMO_WORKLOAD["batch_sizes"]))
    jobs = sweep_jobs(experiment or experiment_name("demo"), ModelRef(BUNDLED_MODEL),
                      recipe_grid(precisions, ["none"], ["auto"]), DataSpec(**DEMO_DATA), workload, "torch")
    return [(payload, "Demo sweep: " + title) for payload, title in jobs]


def queue_demo() -> list[int]:
    from app import state

    return [state.queue_sweep(payload, title) for payload, title in demo_jobs(state.precision_choices("torch"))]


def diffusion_sweep_spec(experiment: str, precisions: list[str], generation: GenerationSpec,
                         batch_sizes: list[int] | tuple[int, ...] | None, model: ModelRef | None = None,
                         image_side: int = DIFFUSION_IMAGE_SIDE) -> SweepSpec:
    """The diffusion sweep the Experiment page describes: the bundled digits model (or `model`, a local
    pipeline drawing `image_side`-pixel images), one recipe per precision (the baseline runs too),
    `generation`'s images, and the denoiser timed at `batch_sizes` (None: quality only). Validated:
    raises TlabError with what to fix."""
    workload = (Workload(image_side, generation.steps, tuple(sorted(batch_sizes)))
                if batch_sizes is not None else None)
    return SweepSpec(model=model or ModelRef(BUNDLED_DIFFUSION),
                     recipes=tuple(recipe_grid(precisions, ["none"], ["auto"])),
                     kind="diffusion", generation=generation, workload=workload, experiment=experiment)


def diffusion_sweep_jobs(experiment: str, precisions: list[str], generation: GenerationSpec,
                         batch_sizes: list[int] | tuple[int, ...] | None, model: ModelRef | None = None,
                         image_side: int = DIFFUSION_IMAGE_SIDE) -> list[tuple[dict, str]]:
    """(payload, title) of the one job a diffusion sweep needs."""
    spec = diffusion_sweep_spec(experiment, precisions, generation, batch_sizes, model, image_side)
    labels = ", ".join(r.label for r in spec.recipes[1:])
    name = "bundled digits diffusion model" if model is None else model.source
    return [(sweep_payload(spec), f"{experiment} · {name}: {labels}")]


def diffusion_demo_jobs(experiment: str | None = None) -> list[tuple[dict, str]]:
    """(payload, title) of the diffusion demo's job: the bundled digits model in INT8 SmoothQuant and FP8,
    digits 0-9 x 2 images in 10 steps, 8 calibration images, the denoiser timed at batch 8."""
    jobs = diffusion_sweep_jobs(experiment or experiment_name("diffusion-demo"), list(DIFFUSION_DEMO_PRECISIONS),
                                GenerationSpec(**{**DIFFUSION_DEMO_GENERATION,
                                                  "labels": tuple(DIFFUSION_DEMO_GENERATION["labels"])}),
                                DIFFUSION_DEMO_BATCH_SIZES)
    return [(payload, "Diffusion demo: " + title.split(" · ", 1)[-1]) for payload, title in jobs]


def queue_diffusion_demo() -> list[int]:
    from app import state

    return [state.queue_sweep(payload, title) for payload, title in diffusion_demo_jobs()]


def precision_label(name: str) -> str:
    return registry.precision(name).label
