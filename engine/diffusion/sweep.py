"""A diffusion sweep: the same spec, registry and store as a language-model sweep.

For the bundled model (`ModelRef("bundled-diffusion")`): load once, collect calibration inputs once
(the baseline sampler's denoiser inputs at every step), generate the baseline images once; then for
each recipe quantize a fresh copy of the denoiser with modelopt (simulated quantization), generate the
same images from the same seeds, and compare. Results go to the store as they finish; finished ids
are reused. With a workload, the speed stage times baseline and recipes side by side on real
low-precision kernels only (INT8 on the CPU: oneDNN / fbgemm), never a fake-quantized module.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine import registry
from engine.diffusion import BUNDLED_LABEL
from engine.errors import ModelLoadError, SpecError, TlabError, UnsupportedOnDevice
from engine.spec import ExperimentSpec, ModelRef, Recipe, SweepSpec
from engine.reuse import results_to_compute
from engine.store.entities import PARTIAL, Measurement, Result
from engine.system import describe_device, resolve_device, versions

Progress = Callable[[float, str], None]
BUNDLED_SOURCES = ("bundled-diffusion",)
MODEL_NAME = f"digits UNet (bundled; {BUNDLED_LABEL})"
SCHEDULERS = ("ddim", "default")  # the bundled sampler is DDIM (eta 0)
WARMUP = 3  # untimed runs of each model per batch size before timing
REPEATS, MAX_REPEATS = 5, 15  # interleaved rounds: first, and at most while the spread is too large
STEP_CALLS = 10  # denoiser calls per timed step run (their mean is one run's step latency)
IMAGE_SCALE = 3  # pixels per image pixel in the saved grid
METRIC_LIBRARY = "scikit-image"


def run_diffusion_sweep(spec: SweepSpec, store: Any, progress: Progress, *, force: bool = False) -> list[Result]:
    """Run (or reuse) every recipe of a diffusion `spec`; the results, baseline first.

    Everything that can be checked is checked before any work, so bad input leaves the store as it was."""
    device = resolve_device(spec.device)
    gen = spec.generation
    _check_model_ref(spec.model)
    specs = spec.replace(device=device).experiments()
    for s in specs:
        _check_recipe(s.recipe, device)
    _check_generation(gen)
    unmeasurable = _check_runtime(spec, specs, device)  # TensorRT chosen but unable to run here: refused now
    todo = results_to_compute(specs, store, spec.workload is not None, force, progress)
    if not todo:
        return [store.get_result(s.id) for s in specs]

    import torch

    from engine.cpu_threads import job_threads
    from engine.diffusion.bundled import load_bundled

    progress(0.0, "loading the bundled diffusion model")
    t0 = time.perf_counter()
    model = load_bundled(device)
    _check_against_model(gen, model)  # resolution and labels against the loaded model, still before work
    experiment = spec.experiment or "digits UNet sweep"
    store.ensure_experiment(experiment, MODEL_NAME, {"generation": _plain(gen)})
    with job_threads(device) as threads:  # CPU: only the cores other programs leave free
        ctx = _Context(model, gen, device, {"load_s": time.perf_counter() - t0})
        ctx.threads = threads
        ctx.runtime, ctx.unmeasurable = spec.runtime, unmeasurable
        ctx.prepare(lambda f, s: progress(0.05 + 0.15 * f, s))
        acc_share = 0.75 if spec.workload is None else 0.55
        to_benchmark, results = [], []
        for n, exp in enumerate(todo):
            start, width = 0.2 + acc_share * n / len(todo), acc_share / len(todo)
            result, calibrated = _run_one(ctx, exp, experiment, lambda f, s, a=start, w=width: progress(a + w * f, s))
            result.status = PARTIAL  # until the whole sweep is done (see engine.store.entities)
            results.append(result)
            if spec.workload is not None:
                deployed, why = _deploy(ctx, exp.recipe, calibrated)
                if why:
                    result.provenance["speed_not_measured"] = why
                else:
                    to_benchmark.append((exp, result, deployed))
            store.save_result(result)
            del calibrated
        if to_benchmark:
            with torch.no_grad():
                stage = _tensorrt_speed_stage if ctx.runtime == "tensorrt" else _speed_stage
                stage(ctx, to_benchmark, store, lambda f, s: progress(0.75 + 0.25 * f, s))
        for result in results:
            result.status = "done"
        store.save_results(results)
    progress(1.0, "done")
    return [store.get_result(s.id) for s in specs]


# --- checks before any work -------------------------------------------------------------------

def _check_model_ref(ref: ModelRef) -> None:
    """Only the bundled model runs so far; anything else is refused with what is wrong with it."""
    if ref.source in BUNDLED_SOURCES:
        return
    folder = Path(ref.source).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(f"Diffusion model {ref.source!r} is not a local folder (nothing is downloaded for "
                             "diffusion sweeps). Use 'bundled-diffusion', the bundled digits model.")
    unet = folder / "unet" if (folder / "unet").is_dir() else folder
    if not (unet / "config.json").is_file():
        raise ModelLoadError(f"{folder} holds no diffusers UNet (no config.json in it or in unet/).")
    if not list(unet.glob("*.safetensors")):
        pickles = [p.name for p in unet.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
        raise ModelLoadError(f"{unet} has no .safetensors weights{' (only ' + ', '.join(pickles) + ')' if pickles else ''}; "
                             "pickle files are never loaded (they can run code). Convert the weights to safetensors.")
    raise ModelLoadError(f"Diffusion sweeps run only the bundled model ('bundled-diffusion') so far; "
                         f"the diffusers UNet in {folder} is not supported yet.")


def _check_recipe(recipe: Recipe, device: str) -> None:
    prec = registry.precision(recipe.precision)
    if "diffusion" not in prec.model_kinds:
        raise SpecError(f"{prec.label} does not apply to a diffusion model; use one of "
                        f"{', '.join(p.name for p in registry.precisions_for('diffusion'))}.")
    if recipe.sparsity != "none" or recipe.kv_cache != "auto":
        raise SpecError(f"{recipe.label}: diffusion sweeps take a precision only (no sparsity, no KV cache).")
    if prec.cuda_only_calibration and not device.startswith("cuda"):
        raise UnsupportedOnDevice(f"{prec.label} calibration needs an NVIDIA GPU; this run is on {device}.")


def _check_generation(gen) -> None:
    from engine.diffusion.bundled import NUM_DIGITS

    if gen.prompts:
        raise SpecError("The bundled diffusion model draws digits by class label; it takes no text prompts. "
                        "Give labels (digits 0-9) instead.")
    if gen.scheduler not in SCHEDULERS:
        raise SpecError(f"The bundled model samples with DDIM; scheduler {gen.scheduler!r} is not supported yet "
                        "(use 'ddim' or 'default').")
    bad = [v for v in gen.labels if v >= NUM_DIGITS]
    if bad:
        raise SpecError(f"Labels must be digits from 0 to 9 for the bundled model, got {bad[:5]}.")
    if gen.guidance_scale is not None and gen.guidance_scale < 1:
        raise SpecError(f"The guidance scale must be at least 1 (or none), got {gen.guidance_scale}.")


def _check_against_model(gen, model) -> None:
    from engine.diffusion.bundled import check_request

    cfg = model.unet.config
    factor = 2 ** (len(cfg.down_block_types) - 1)
    size = int(cfg.sample_size)
    if gen.resolution is not None:
        if gen.resolution % factor:
            raise SpecError(f"Resolution {gen.resolution} is not divisible by {factor}, the UNet's downsampling "
                            f"factor; use a multiple of {factor} (the bundled model's own is {size}).")
        if gen.resolution != size:
            raise SpecError(f"The bundled model draws {size}x{size} images (its classifier reads that size); "
                            f"resolution {gen.resolution} is not supported. Leave it unset or give {size}.")
    check_request(gen.labels, gen.steps, gen.guidance_scale, int(model.scheduler.config.num_train_timesteps))


# --- quality ------------------------------------------------------------------------------------

class _Context:
    """What a sweep shares: the pristine model, calibration inputs and the baseline images."""

    def __init__(self, model, gen, device: str, timings: dict):
        self.model, self.gen, self.device, self.timings = model, gen, device, timings
        self.labels = [v for v in gen.labels for _ in range(gen.images_per_condition)]
        self.calib: list = []
        self.baseline_images = None
        self.baseline_accuracy: float | None = None
        self.threads = None  # (number, why) on CPU

    def sample(self, unet):
        from engine.diffusion.bundled import generate

        return generate(unet, self.model.scheduler, self.labels, steps=self.gen.steps, seed=self.gen.seed,
                        guidance_scale=self.gen.guidance_scale, batch_size=64)

    def prepare(self, progress: Progress) -> None:
        from engine.diffusion.bundled import task_accuracy
        from engine.diffusion.quantize import calibration_inputs

        t0 = time.perf_counter()
        progress(0.0, f"sampling {self.gen.calib_images} calibration images over {self.gen.steps} steps")
        calib_labels = [self.gen.labels[i % len(self.gen.labels)] for i in range(self.gen.calib_images)]
        # other seeds than the evaluation's, so calibration never sees the images it is scored on
        self.calib = calibration_inputs(self.model.unet, self.model.scheduler, calib_labels, self.gen.steps,
                                        self.gen.seed + 1_000_003, self.gen.guidance_scale)
        t1 = time.perf_counter()
        progress(0.5, f"generating {len(self.labels)} baseline images")
        self.baseline_images = self.sample(self.model.unet)
        self.baseline_accuracy = task_accuracy(self.model.classifier, self.baseline_images, self.labels)
        self.timings.update(calib_data_s=t1 - t0, baseline_s=time.perf_counter() - t1)


def image_metrics(reference, images) -> dict[str, float]:
    """PSNR (dB) and mean SSIM of `images` against `reference`, both (N, C, H, W) in [-1, 1] (data
    range 2), with scikit-image; and the PSNR of the final latents (here the images themselves)."""
    import numpy as np
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    ref = reference.float().numpy().astype(np.float64)
    img = images.float().numpy().astype(np.float64)
    with np.errstate(divide="ignore"):
        psnr = float(peak_signal_noise_ratio(ref, img, data_range=2.0))
    ssim = float(np.mean([structural_similarity(r, i, data_range=2.0, channel_axis=0) for r, i in zip(ref, img)]))
    out = {"ssim": ssim}
    if np.isfinite(psnr):  # identical images: PSNR is infinite, which no JSON holds
        out["psnr_db"] = psnr
        out["latent_psnr_db"] = psnr  # no VAE: the final latents are the images
    return out


def _run_one(ctx: _Context, spec: ExperimentSpec, experiment: str, progress: Progress) -> tuple[Result, Any]:
    """Quantize (unless baseline), generate and score one recipe: its result and the calibrated UNet."""
    import torch

    from engine.diffusion.bundled import task_accuracy
    from engine.diffusion.quantize import quantize

    torch.manual_seed(spec.generation.seed)
    baseline = registry.precision(spec.recipe.precision).is_baseline
    timings = dict(ctx.timings) if baseline else {}
    metrics: dict[str, float] = {"task_accuracy": ctx.baseline_accuracy}
    if baseline:
        unet, images = ctx.model.unet, ctx.baseline_images
    else:
        t0 = time.perf_counter()
        progress(0.0, f"applying {spec.recipe.label}")
        unet = quantize(ctx.model.unet, spec.recipe.precision, ctx.calib, lambda f, s: progress(0.6 * f, s))
        t1 = time.perf_counter()
        progress(0.6, f"generating {len(ctx.labels)} images with {spec.recipe.label}")
        images = ctx.sample(unet)
        acc = task_accuracy(ctx.model.classifier, images, ctx.labels)
        metrics = {"task_accuracy": acc, "task_accuracy_loss_pts": 100.0 * (ctx.baseline_accuracy - acc),
                   **image_metrics(ctx.baseline_images, images)}
        timings.update(calibrate_s=t1 - t0, evaluate_s=time.perf_counter() - t1)
    grid = _save_grid(spec.id, ctx.baseline_images, images, spec.recipe, baseline)
    result = Result(
        id=spec.id, experiment=experiment, model=MODEL_NAME, precision=spec.recipe.precision,
        sparsity=spec.recipe.sparsity, kv_cache=spec.recipe.kv_cache, spec=spec.to_dict(), metrics=metrics,
        units={"task_accuracy": "share", "task_accuracy_loss_pts": "points", **(
            {} if baseline else {"psnr_db": "dB", "latent_psnr_db": "dB"})},
        provenance={"accuracy": _accuracy_provenance(ctx, spec, baseline), "images": grid,
                    "model_label": BUNDLED_LABEL},
        timings=timings, device=describe_device(ctx.device), versions=_versions(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    result.units = {k: v for k, v in result.units.items() if k in metrics}
    return result, (None if baseline else unet)


def _versions() -> dict[str, str]:
    return {**versions(), **versions("diffusers", "scikit-image")}


def _accuracy_provenance(ctx: _Context, spec: ExperimentSpec, baseline: bool) -> dict:
    gen = ctx.gen
    guided = f", classifier-free guidance {gen.guidance_scale}" if gen.guidance_scale else ""
    method = (f"{len(ctx.labels)} images ({gen.images_per_condition} per label for labels "
              f"{list(gen.labels)}), DDIM {gen.steps} steps{guided}, seed {gen.seed}: image i starts from the "
              f"same noise for the baseline and every recipe. Task metric: the share the bundled digit "
              f"classifier reads as the digit asked for.")
    if not baseline:
        method += (f" PSNR (data range 2 for [-1, 1]) and mean SSIM against the baseline's images from the same "
                   f"seeds, with {METRIC_LIBRARY}; latent PSNR is the PSNR of the final latents, which for this "
                   f"model (no VAE) are the images. Calibration: the baseline sampler's denoiser inputs at all "
                   f"{gen.steps} steps of {gen.calib_images} images from other seeds.")
    extra = {"cpu_threads": ctx.threads[0], "cpu_threads_note": ctx.threads[1]} if ctx.threads else {}
    return {**extra, "kind": "measured", "device": describe_device(ctx.device),
            "engine": "PyTorch, unquantized float32" if baseline else "modelopt simulated (fake) quantization in PyTorch",
            "versions": _versions(), "method": method}


def _save_grid(result_id: str, baseline_images, images, recipe: Recipe, baseline: bool) -> dict:
    """A PNG under tlab_home()/images/<result id>.png: the baseline row over the recipe row."""
    from PIL import Image

    from engine.diffusion.bundled import image_grid
    from engine.paths import tlab_home

    folder = tlab_home() / "images"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result_id}.png"
    rows = [baseline_images] if baseline else [baseline_images, images]
    Image.fromarray(image_grid(rows, scale=IMAGE_SCALE)).save(path)
    return {"grid": str(path), "rows": ["baseline (unquantized)"] if baseline
            else ["baseline (unquantized)", recipe.label], "note": "same seeds and labels in every row"}


def _plain(gen) -> dict:
    import dataclasses

    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(gen).items()}


# --- speed --------------------------------------------------------------------------------------

def _deploy(ctx: _Context, recipe: Recipe, calibrated) -> tuple[Any, str | None]:
    """(model on real kernels, None), or (None, why its speed is not measured here)."""
    if getattr(ctx, "runtime", "torch") == "tensorrt":
        return _deploy_tensorrt(ctx, recipe, calibrated)
    prec = registry.precision(recipe.precision)
    if prec.is_baseline:
        return ctx.model.unet, None
    if not ctx.device.startswith("cpu"):
        return None, f"No {prec.label} kernels for the diffusion denoiser on {ctx.device} yet (CPU INT8 only)."
    if recipe.precision == "fp8":
        return None, "no FP8 kernels on CPU"
    if recipe.precision != "int8_sq":
        return None, f"No real {prec.label} kernels for the diffusion denoiser on the CPU."
    from engine.diffusion.kernels import check_deployed, deploy_int8

    try:
        deployed, counts = deploy_int8(ctx.model.unet, calibrated)
        diff = check_deployed(deployed, calibrated, ctx.calib[:: max(1, len(ctx.calib) // 4)][:4])
    except UnsupportedOnDevice as exc:
        return None, str(exc)
    deployed.kernel_info = {**counts, "relative_output_diff_vs_calibrated": diff,
                            "kernels": "onednn::qconv2d_pointwise (Conv2d), quantized::linear_with_input_q_dq_"
                                       "qweight_dq_output_fp32 via fbgemm (Linear); other layers float32"}
    return deployed, None


def _device_info(device: str) -> dict:
    import torch

    from engine.system import cpu_name, usable_cpus

    if device.startswith("cuda"):
        return {"kind": "cuda", "name": torch.cuda.get_device_name(torch.device(device).index or 0)}
    return {"kind": "cpu", "name": cpu_name(), "cores": len(usable_cpus()), "threads": torch.get_num_threads(),
            "isa": torch.backends.cpu.get_cpu_capability()}


def _timed_runs(ctx: _Context, models: list, batch: int, on_run: Callable[[], None] = lambda: None) -> Callable:
    """run_rounds(rounds, first, done) for runs_until_steady: per model, `rounds` runs of
    {"step_latency_ms", "latency_ms"}, the models alternating run by run; `on_run()` after each run
    (warm-up ones too), for progress."""
    import torch

    from engine.diffusion.bundled import ddim_from, initial_noise

    gen = ctx.gen
    size = int(ctx.model.unet.config.sample_size)
    x0 = initial_noise(batch, size, gen.seed, int(ctx.model.unet.config.in_channels))
    y = torch.tensor([gen.labels[i % len(gen.labels)] for i in range(batch)])
    t_mid = torch.tensor(int(ctx.model.scheduler.config.num_train_timesteps) // 2)

    def step_ms(unet) -> float:
        t0 = time.perf_counter()
        for _ in range(STEP_CALLS):
            unet(x0, t_mid, class_labels=y)
        return (time.perf_counter() - t0) / STEP_CALLS * 1e3

    def end_to_end_ms(unet) -> float:
        t0 = time.perf_counter()
        sched = ddim_from(ctx.model.scheduler)
        sched.set_timesteps(gen.steps)
        x = x0.clone()
        for t in sched.timesteps:
            eps = unet(x, t, class_labels=y).sample
            x = sched.step(eps, t, x, eta=0.0).prev_sample
        return (time.perf_counter() - t0) * 1e3

    def run_rounds(rounds: int, first: bool, done: int) -> list[list[dict[str, float]]]:
        if first:
            for m in models:
                for _ in range(WARMUP):
                    step_ms(m)
                    end_to_end_ms(m)
                    on_run()
        runs: list[list[dict[str, float]]] = [[] for _ in models]
        for _ in range(rounds):
            for j, m in enumerate(models):
                runs[j].append({"step_latency_ms": step_ms(m), "latency_ms": end_to_end_ms(m)})
                on_run()
        return runs

    return run_rounds


def _speed_stage(ctx: _Context, entries: list, store: Any, progress: Progress) -> None:
    """Time baseline and recipes interleaved at each batch size; add speed to the results."""
    from engine.runtimes.base import runs_until_steady, speedup, summarize_runs
    from engine.runtimes.run_progress import RunProgress

    progress = RunProgress(progress)  # the fraction moves run by run, not once per batch size
    workload = entries[0][0].workload
    models = [deployed for _, _, deployed in entries]
    per_entry: list[list[Measurement]] = [[] for _ in entries]
    t0 = time.perf_counter()
    device = _device_info(ctx.device)
    n_batches = len(workload.batch_sizes)
    for i, batch in enumerate(workload.batch_sizes):
        progress.slice(i / n_batches, (i + 1) / n_batches, (WARMUP + REPEATS) * len(models))
        stage = f"timing the denoiser at batch {batch}"
        progress.say(stage)
        runs = runs_until_steady(_timed_runs(ctx, models, batch, lambda: progress.ran().say(stage)),
                                 REPEATS, MAX_REPEATS, metric="step_latency_ms",
                                 on_more=lambda worst, n: progress.plan(n * len(models)).say(
                                     f"runs varied by {worst:.0%}: {n} more round(s) at batch {batch}"))
        for j, ((exp, _, deployed), model_runs) in enumerate(zip(entries, runs)):
            medians, spreads = summarize_runs(model_runs)
            per_entry[j].append(Measurement(
                backend="torch", precision=exp.recipe.precision, sparsity=exp.recipe.sparsity, batch_size=batch,
                input_len=int(ctx.model.unet.config.sample_size), output_len=ctx.gen.steps, metrics=medians,
                spread=spreads, repeats=len(model_runs),
                provenance={"kind": "measured", "device": device, "backend": "torch", "versions": _versions(),
                            "workload": {"batch_size": batch, "steps": ctx.gen.steps,
                                         "resolution": int(ctx.model.unet.config.sample_size),
                                         "note": "input_len = image side, output_len = denoising steps"},
                            "kernels": getattr(deployed, "kernel_info", {"kernels": "float32 PyTorch (baseline)"})}))
    elapsed = time.perf_counter() - t0
    base = per_entry[0] if registry.precision(entries[0][0].recipe.precision).is_baseline else None
    for (exp, result, _), speed in zip(entries, per_entry):
        refused: dict[str, str] = {}
        for k, m in enumerate(speed):
            bs = m.batch_size
            result.metrics[f"step_latency_ms_bs{bs}"] = m.metrics["step_latency_ms"]
            result.metrics[f"latency_ms_bs{bs}"] = m.metrics["latency_ms"]
            result.units.update({f"step_latency_ms_bs{bs}": "ms", f"latency_ms_bs{bs}": "ms"})
            if base is None or speed is base:
                continue
            b = base[k]
            _record_step_speedup(result, refused, k, b, m)
            e2e, why_e2e = speedup(b, m, "latency_ms")
            if e2e is not None:
                result.metrics[f"end_to_end_speedup_bs{bs}"] = e2e
            elif why_e2e:
                refused[f"{bs} (end to end)"] = why_e2e
        result.provenance["speed"] = {
            "kind": "measured", "device": device, "backend": "torch", "versions": _versions(),
            "speedup_metric": "step_latency_ms", "speedup_refused": refused,
            "method": (f"per-step denoiser latency (mean of {STEP_CALLS} calls) and end-to-end latency ({ctx.gen.steps} "
                       f"DDIM steps), {WARMUP} warm-up runs, baseline and recipes alternating run by run, "
                       f"medians of {REPEATS}-{MAX_REPEATS} runs; speedup refused when a side varies by over 10%"),
            "measurements": [m.to_dict() for m in speed]}
        result.timings["benchmark_s"] = elapsed / len(entries)
        store.save_result(result)
    progress(1.0, "speed measured")


# --- TensorRT (engine/runtimes/tensorrt): the denoiser exported to ONNX, built and timed by trtexec ---

def _check_runtime(spec: SweepSpec, specs: list[ExperimentSpec], device: str) -> dict[Recipe, str]:
    """With TensorRT chosen and a workload: refuse before any work when it cannot run here at all;
    else {recipe: why} for the recipes it cannot time on this GPU (they keep their quality)."""
    if spec.runtime != "tensorrt" or spec.workload is None:
        return {}
    from engine.runtimes.tensorrt import TensorRTRuntime
    from engine.runtimes.tensorrt.availability import refusal

    runtime = TensorRTRuntime(device=device)
    base = runtime.availability(specs[0].recipe.precision)
    if not base:
        raise UnsupportedOnDevice(refusal(base.reason))
    out = {}
    for s in specs[1:]:
        avail = runtime.availability(s.recipe.precision)
        if not avail:
            out[s.recipe] = refusal(avail.reason)
    return out


def _deploy_tensorrt(ctx: _Context, recipe: Recipe, calibrated) -> tuple[Any, str | None]:
    """The modelopt-quantized denoiser itself (TensorRT reads its Q/DQ ONNX), or why not timed."""
    why = ctx.unmeasurable.get(recipe)
    if why:
        return None, why
    return (ctx.model.unet if registry.precision(recipe.precision).is_baseline else calibrated), None


def _record_step_speedup(result: Any, refused: dict[str, str], k: int, base: Any, m: Any) -> None:
    """The denoiser-step speedup (where the quantized layers are) of measurement `m` against the baseline's,
    on the result; or why none is reported. The first batch size's is also the result's `speedup`."""
    from engine.runtimes.base import speedup

    ratio, why = speedup(base, m, "step_latency_ms")
    if ratio is not None:
        result.metrics[f"speedup_bs{m.batch_size}"] = ratio
        if k == 0:
            result.metrics["speedup"] = ratio
    else:
        refused[str(m.batch_size)] = why


def _tensorrt_speed_stage(ctx: _Context, entries: list, store: Any, progress: Progress) -> None:
    """Time baseline and recipes as TensorRT engines (trtexec), interleaved; add speed to the results."""
    from engine.runtimes.tensorrt import TensorRTRuntime
    from engine.spec import Workload

    side = int(ctx.model.unet.config.sample_size)
    workload = Workload(side, ctx.gen.steps, tuple(entries[0][0].workload.batch_sizes))
    t0 = time.perf_counter()
    runtime = TensorRTRuntime(device=ctx.device)
    per_entry = runtime.compare([(deployed, exp.recipe) for exp, _, deployed in entries], workload, progress)
    elapsed = time.perf_counter() - t0
    base = per_entry[0] if registry.precision(entries[0][0].recipe.precision).is_baseline else None
    for (exp, result, _), speed in zip(entries, per_entry):
        refused: dict[str, str] = {}
        for k, m in enumerate(speed):
            bs = m.batch_size
            result.metrics[f"step_latency_ms_bs{bs}"] = m.metrics["step_latency_ms"]
            result.units[f"step_latency_ms_bs{bs}"] = "ms"
            if base is None or speed is base:
                continue
            _record_step_speedup(result, refused, k, base[k], m)
        result.provenance["speed"] = {
            "kind": "measured", "device": speed[0].provenance["device"], "backend": "tensorrt",
            "versions": speed[0].provenance["versions"], "speedup_metric": "step_latency_ms",
            "speedup_refused": refused,
            "method": ("the denoiser exported to ONNX (modelopt Q/DQ nodes for quantized recipes), one TensorRT "
                       "engine per recipe and batch size built by trtexec, then timed by trtexec in runs that "
                       "alternate recipe by recipe; per run the median 'GPU Compute Time' of one denoiser call; "
                       "medians over runs; speedup refused when a side varies by over 10%. End-to-end pipeline "
                       "latency is not measured on this backend."),
            "measurements": [m.to_dict() for m in speed]}
        result.timings["benchmark_s"] = elapsed / len(entries)
        store.save_result(result)
    progress(1.0, "speed measured")


__all__ = ["run_diffusion_sweep", "image_metrics", "TlabError"]
