"""A diffusion sweep: the same spec, registry and store as a language-model sweep.

One flow for every diffusion model (engine.diffusion.pipelines.Denoising: the bundled digits model, or a
diffusers pipeline from a local folder or a Hugging Face id): check everything the files and settings
tell before any work; load once, collect calibration inputs once (the baseline sampler's denoiser inputs
at every step, from other seeds), generate the baseline images once; then for each recipe quantize a
fresh copy of the denoiser with modelopt (simulated quantization), generate the same images from the
same seeds, and compare. Results go to the store as they finish; finished ids are reused. With a
workload, the speed stage times baseline and recipes side by side on real low-precision kernels only
(INT8 on the CPU: oneDNN / fbgemm), never a fake-quantized module.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from engine import registry
from engine.diffusion.pipelines import BUNDLED_NAME, check_source, labels_view, load
from engine.errors import SpecError, TlabError, UnsupportedOnDevice
from engine.spec import ExperimentSpec, Recipe, SweepSpec
from engine.reuse import results_to_compute
from engine.store.entities import PARTIAL, Measurement, Result
from engine.system import describe_device, resolve_device, versions

Progress = Callable[[float, str], None]
MODEL_NAME = BUNDLED_NAME
WARMUP = 3  # untimed runs of each model per batch size before timing
REPEATS, MAX_REPEATS = 5, 15  # interleaved rounds: first, and at most while the spread is too large
STEP_CALLS = 10  # denoiser calls per timed step run (their mean is one run's step latency)
IMAGE_SCALE = 3  # pixels per image pixel in the saved grid (small images only)
MAX_GRID_SIDE = 96  # images at least this wide are saved at their own size
METRIC_LIBRARY = "scikit-image"


def run_diffusion_sweep(spec: SweepSpec, store: Any, progress: Progress, *, force: bool = False) -> list[Result]:
    """Run (or reuse) every recipe of a diffusion `spec`; the results, baseline first.

    Everything that can be checked is checked before any work, so bad input leaves the store as it was."""
    device = resolve_device(spec.device)
    gen = spec.generation
    source = check_source(spec.model, gen)  # layout, safetensors, custom code, labels vs prompts
    specs = spec.replace(device=device).experiments()
    for s in specs:
        _check_recipe(s.recipe, device)
    if not source.bundled and spec.runtime == "tensorrt" and spec.workload is not None:
        _check_exportable(source)  # a UNet whose inputs the ONNX export cannot build: refused before any work
    unmeasurable = _check_runtime(spec, specs, device)  # TensorRT chosen but unable to run here: refused now
    todo = results_to_compute(specs, store, spec.workload is not None, force, progress)
    if not todo:
        return [store.get_result(s.id) for s in specs]

    import torch

    from engine.cpu_threads import job_threads

    progress(0.0, f"loading {'the bundled diffusion model' if source.bundled else spec.model.source}")
    t0 = time.perf_counter()
    model = load(source, device)
    model.check(gen)  # resolution, labels, steps against the loaded model, still before any work
    experiment = spec.experiment or ("digits UNet sweep" if source.bundled else f"{model.name} sweep")
    store.ensure_experiment(experiment, model.name, {"generation": _plain(gen)})
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

def _check_recipe(recipe: Recipe, device: str) -> None:
    prec = registry.precision(recipe.precision)
    if "diffusion" not in prec.model_kinds:
        raise SpecError(f"{prec.label} does not apply to a diffusion model; use one of "
                        f"{', '.join(p.name for p in registry.precisions_for('diffusion'))}.")
    if recipe.sparsity != "none" or recipe.kv_cache != "auto":
        raise SpecError(f"{recipe.label}: diffusion sweeps take a precision only (no sparsity, no KV cache).")
    if prec.cuda_only_calibration and not device.startswith("cuda"):
        raise UnsupportedOnDevice(f"{prec.label} calibration needs an NVIDIA GPU; this run is on {device}.")


# --- quality ------------------------------------------------------------------------------------

class _Context:
    """What a sweep shares: the pristine model, calibration inputs and the baseline images."""

    def __init__(self, model, gen, device: str, timings: dict):
        self.model, self.gen, self.device, self.timings = model, gen, device, timings
        self.conditions = model.conditions(gen)
        self.calib: list = []
        self.baseline = None  # pipelines.Sample
        self.baseline_accuracy: float | None = None
        self.threads = None  # (number, why) on CPU

    @property
    def baseline_images(self):
        return self.baseline.images

    def sample(self, unet):
        return self.model.sample(unet, self.conditions, self.gen, self.gen.seed)

    def prepare(self, progress: Progress) -> None:
        t0 = time.perf_counter()
        progress(0.0, f"sampling {self.gen.calib_images} calibration images over {self.gen.steps} steps")
        self.calib = self.model.calibration_inputs(self.gen)
        t1 = time.perf_counter()
        progress(0.5, f"generating {len(self.conditions)} baseline images")
        self.baseline = self.sample(self.model.unet)
        self.baseline_accuracy = self.model.task_accuracy(self.baseline.images, self.conditions)
        self.timings.update(calib_data_s=t1 - t0, baseline_s=time.perf_counter() - t1)


def _ssim(ref, img, data_range: float) -> float | None:
    """Mean SSIM over images (N, C, H, W); the window shrinks to fit images under 7 pixels a side
    (None under 3 pixels, where SSIM has no window)."""
    import numpy as np
    from skimage.metrics import structural_similarity

    side = min(ref.shape[-2:])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        return None
    return float(np.mean([structural_similarity(r, i, data_range=data_range, channel_axis=0, win_size=win)
                          for r, i in zip(ref, img)]))


def image_metrics(reference, images, reference_latents=None, latents=None) -> dict[str, float]:
    """PSNR (dB) and mean SSIM of `images` against `reference`, both (N, C, H, W) in [-1, 1] (data
    range 2), with scikit-image; and PSNR and SSIM of the final latents (data range: the reference
    latents' own), or, without latents (no VAE), the image PSNR as the latent PSNR."""
    import numpy as np
    from skimage.metrics import peak_signal_noise_ratio

    ref = reference.float().numpy().astype(np.float64)
    img = images.float().numpy().astype(np.float64)
    with np.errstate(divide="ignore"):
        psnr = float(peak_signal_noise_ratio(ref, img, data_range=2.0))
    out = {"ssim": _ssim(ref, img, 2.0)}
    if np.isfinite(psnr):  # identical images: PSNR is infinite, which no JSON holds
        out["psnr_db"] = psnr
        if latents is None:
            out["latent_psnr_db"] = psnr  # no VAE: the final latents are the images
    if latents is not None:
        ref_l = reference_latents.float().numpy().astype(np.float64)
        lat = latents.float().numpy().astype(np.float64)
        span = float(ref_l.max() - ref_l.min()) or 1.0
        with np.errstate(divide="ignore"):
            lpsnr = float(peak_signal_noise_ratio(ref_l, lat, data_range=span))
        if np.isfinite(lpsnr):
            out["latent_psnr_db"] = lpsnr
        out["latent_ssim"] = _ssim(ref_l, lat, span)
    return {k: v for k, v in out.items() if v is not None}


def _run_one(ctx: _Context, spec: ExperimentSpec, experiment: str, progress: Progress) -> tuple[Result, Any]:
    """Quantize (unless baseline), generate and score one recipe: its result and the calibrated UNet."""
    import torch

    from engine.diffusion.quantize import quantize

    torch.manual_seed(spec.generation.seed)
    baseline = registry.precision(spec.recipe.precision).is_baseline
    timings = dict(ctx.timings) if baseline else {}
    metrics: dict[str, float] = {}
    if ctx.baseline_accuracy is not None:
        metrics["task_accuracy"] = ctx.baseline_accuracy
    if baseline:
        unet, out = ctx.model.unet, ctx.baseline
    else:
        t0 = time.perf_counter()
        progress(0.0, f"applying {spec.recipe.label}")
        unet = quantize(ctx.model.unet, spec.recipe.precision, ctx.calib, lambda f, s: progress(0.6 * f, s),
                        call=ctx.model.call)
        t1 = time.perf_counter()
        progress(0.6, f"generating {len(ctx.conditions)} images with {spec.recipe.label}")
        out = ctx.sample(unet)
        acc = ctx.model.task_accuracy(out.images, ctx.conditions)
        if acc is not None:
            metrics = {"task_accuracy": acc, "task_accuracy_loss_pts": 100.0 * (ctx.baseline_accuracy - acc)}
        metrics.update(image_metrics(ctx.baseline.images, out.images, ctx.baseline.latents, out.latents))
        timings.update(calibrate_s=t1 - t0, evaluate_s=time.perf_counter() - t1)
    grid = _save_grid(spec.id, ctx.baseline.images, out.images, spec.recipe, baseline, ctx.model.conditioning)
    units = {"task_accuracy": "share", "task_accuracy_loss_pts": "points", "psnr_db": "dB", "latent_psnr_db": "dB"}
    result = Result(
        id=spec.id, experiment=experiment, model=ctx.model.name, precision=spec.recipe.precision,
        sparsity=spec.recipe.sparsity, kv_cache=spec.recipe.kv_cache, spec=spec.to_dict(), metrics=metrics,
        units={k: v for k, v in units.items() if k in metrics},
        provenance={"accuracy": _accuracy_provenance(ctx, baseline), "images": grid, "model_label": ctx.model.label},
        timings=timings, device=describe_device(ctx.device), versions=_versions(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return result, (None if baseline else unet)


def _versions() -> dict[str, str]:
    return {**versions(), **versions("diffusers", "scikit-image")}


def _accuracy_provenance(ctx: _Context, baseline: bool) -> dict:
    gen, about = ctx.gen, ctx.model.describe(ctx.gen)
    guided = f", classifier-free guidance {gen.guidance_scale}" if gen.guidance_scale else ""
    what = (f"{gen.images_per_condition} per label for labels {list(gen.labels)}" if ctx.model.conditioning == "labels"
            else f"{gen.images_per_condition} per prompt for {len(gen.prompts)} prompt(s)")
    side = gen.resolution or ctx.model.image_side
    method = (f"{len(ctx.conditions)} images ({what}), {side}x{side}, {about['sampler']} {gen.steps} steps{guided}, "
              f"seed {gen.seed}: image i starts from the same noise for the baseline and every recipe.")
    method += (f" Task metric: {about['task']}." if about.get("task") else f" {about['task_note'][:1].upper()}{about['task_note'][1:]}.")
    if not baseline:
        method += (f" PSNR (data range 2 for [-1, 1]) and mean SSIM against the baseline's images from the same "
                   f"seeds, with {METRIC_LIBRARY}; latent PSNR/SSIM compare the final latents ({about['latents']}; "
                   f"data range: the baseline latents' own). Calibration: the baseline sampler's denoiser inputs "
                   f"at all {gen.steps} steps of {gen.calib_images} images from other seeds.")
    extra = {"cpu_threads": ctx.threads[0], "cpu_threads_note": ctx.threads[1]} if ctx.threads else {}
    if not about.get("task"):
        extra["task_metric"] = about["task_note"]
    return {**extra, "kind": "measured", "device": describe_device(ctx.device),
            "engine": "PyTorch, unquantized float32" if baseline else "modelopt simulated (fake) quantization in PyTorch",
            "versions": _versions(), "method": method}


def _save_grid(result_id: str, baseline_images, images, recipe: Recipe, baseline: bool,
               conditioning: str = "labels") -> dict:
    """A PNG under tlab_home()/images/<result id>.png: the baseline row over the recipe row."""
    from PIL import Image

    from engine.diffusion.bundled import image_grid
    from engine.paths import tlab_home

    folder = tlab_home() / "images"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result_id}.png"
    rows = [baseline_images] if baseline else [baseline_images, images]
    scale = IMAGE_SCALE if baseline_images.shape[-1] * IMAGE_SCALE <= MAX_GRID_SIDE else 1
    Image.fromarray(image_grid(rows, scale=scale)).save(path)
    return {"grid": str(path), "rows": ["baseline (unquantized)"] if baseline
            else ["baseline (unquantized)", recipe.label],
            "note": f"same seeds and {'labels' if conditioning == 'labels' else 'prompts'} in every row"}


def _plain(gen) -> dict:
    import dataclasses

    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(gen).items()}


# --- speed --------------------------------------------------------------------------------------

def _deploy(ctx: _Context, recipe: Recipe, calibrated) -> tuple[Any, str | None]:
    """(model on real kernels, None), or (None, why its speed is not measured here)."""
    if getattr(ctx, "runtime", "torch") == "tensorrt":
        return _deploy_tensorrt(ctx, recipe, calibrated)
    from engine.diffusion.speed_support import why_not_timed

    on_gpu = _on_gpu(ctx.device)
    if registry.precision(recipe.precision).is_baseline:
        return (_half_baseline(ctx) if on_gpu else ctx.model.unet), None
    why = why_not_timed(recipe.precision, "cuda" if on_gpu else "cpu")  # deploy_fp8 then checks ctx.device itself
    if why:
        return None, why
    if recipe.precision == "fp8":
        return _deploy_fp8(ctx, calibrated)
    from engine.diffusion.kernels import check_deployed, deploy_int8

    try:
        deployed, counts = deploy_int8(ctx.model.unet, calibrated)
        diff = check_deployed(labels_view(ctx.model, deployed), labels_view(ctx.model, calibrated),
                              ctx.calib[:: max(1, len(ctx.calib) // 4)][:4])
    except UnsupportedOnDevice as exc:
        return None, str(exc)
    deployed.kernel_info = {**counts, "relative_output_diff_vs_calibrated": diff,
                            "kernels": "onednn::qconv2d_pointwise (Conv2d), quantized::linear_with_input_q_dq_"
                                       "qweight_dq_output_fp32 via fbgemm (Linear); other layers float32"}
    return deployed, None


def _on_gpu(device: str) -> bool:
    return device.startswith("cuda")


def _half_baseline(ctx: _Context):
    """The GPU baseline: the unquantized denoiser in bf16 (as diffusion models are run on GPUs)."""
    from engine.diffusion.fp8_deploy import half_denoiser

    half = half_denoiser(ctx.model.unet)
    half.kernel_info = {"kernels": "bf16 PyTorch (baseline)"}
    return half


def _deploy_fp8(ctx: _Context, calibrated) -> tuple[Any, str | None]:
    """The bf16 denoiser with the recipe's FP8 linear layers on torch._scaled_mm (engine/diffusion/fp8_deploy.py)."""
    from engine.diffusion.fp8_deploy import check_deployed, deploy_fp8

    try:
        deployed, counts, left_out = deploy_fp8(ctx.model.unet, calibrated, ctx.device)
        diffs = check_deployed(deployed, calibrated, ctx.model.unet, left_out,
                               ctx.calib[:: max(1, len(ctx.calib) // 4)][:4], ctx.model.call)
    except UnsupportedOnDevice as exc:
        return None, str(exc)
    deployed.kernel_info = {
        **counts, **diffs,
        "kernels": "torch._scaled_mm FP8 E4M3 per-tensor (Linear); LayerNorm inputs FP8 quantize-dequantize; "
                   "convolutions and attention bf16 (PyTorch has no FP8 kernel for them)",
        "covers": "the speedup is of the FP8 linear layers only; the quality columns are the whole recipe's"}
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

    from engine.diffusion.conditions import move

    gen, model = ctx.gen, ctx.model
    x0, cond = (move(v, ctx.device) for v in model.timing_inputs(batch, gen))
    t_mid = torch.tensor(model.num_train_timesteps // 2)
    # a GPU runs asynchronously: time from an idle device to a finished one
    sync = torch.cuda.synchronize if ctx.device.startswith("cuda") else (lambda: None)

    def step_ms(unet) -> float:
        sync()
        t0 = time.perf_counter()
        for _ in range(STEP_CALLS):
            model.call(unet, x0, t_mid, cond)
        sync()
        return (time.perf_counter() - t0) / STEP_CALLS * 1e3

    def end_to_end_ms(unet) -> float:
        sync()
        t0 = time.perf_counter()
        model.denoise_loop(unet, x0, cond, gen)
        sync()
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
    import torch

    from engine.runtimes.base import runs_until_steady, speedup, steady_or_one_thread, summarize_runs
    from engine.runtimes.run_progress import RunProgress

    progress = RunProgress(progress)  # the fraction moves run by run, not once per batch size
    workload = entries[0][0].workload
    models = [deployed for _, _, deployed in entries]
    per_entry: list[list[Measurement]] = [[] for _ in entries]
    t0 = time.perf_counter()
    n_batches = len(workload.batch_sizes)
    thread_note = None
    for i, batch in enumerate(workload.batch_sizes):
        progress.slice(i / n_batches, (i + 1) / n_batches, (WARMUP + REPEATS) * len(models))
        stage = f"timing the denoiser at batch {batch}"
        progress.say(stage)

        def measure(batch=batch, stage=stage):
            return runs_until_steady(_timed_runs(ctx, models, batch, lambda: progress.ran().say(stage)),
                                     REPEATS, MAX_REPEATS, metric="step_latency_ms",
                                     on_more=lambda worst, n: progress.plan(n * len(models)).say(
                                         f"runs varied by {worst:.0%}: {n} more round(s) at batch {batch}"))

        if ctx.device == "cpu":  # as the language-model speed stage: threads that stall on a shared core, then one
            runs, fell_back = steady_or_one_thread(
                measure, torch.get_num_threads(), torch.set_num_threads,
                on_retry=lambda worst: progress.plan((WARMUP + REPEATS) * len(models)).say(
                    f"still {worst:.0%} apart with {torch.get_num_threads()} threads: measuring again on 1 thread"),
                metric="step_latency_ms")
            thread_note = fell_back or thread_note
        else:
            runs = measure()
        device = _device_info(ctx.device) | ({"threads_note": thread_note} if thread_note else {})
        for j, ((exp, _, deployed), model_runs) in enumerate(zip(entries, runs)):
            medians, spreads = summarize_runs(model_runs)
            per_entry[j].append(Measurement(
                backend="torch", precision=exp.recipe.precision, sparsity=exp.recipe.sparsity, batch_size=batch,
                input_len=ctx.gen.resolution or ctx.model.image_side, output_len=ctx.gen.steps, metrics=medians,
                spread=spreads, repeats=len(model_runs),
                provenance={"kind": "measured", "device": device, "backend": "torch", "versions": _versions(),
                            "workload": {"batch_size": batch, "steps": ctx.gen.steps,
                                         "resolution": ctx.gen.resolution or ctx.model.image_side,
                                         "note": "input_len = image side, output_len = denoising steps"},
                            "kernels": getattr(deployed, "kernel_info", {"kernels": "float32 PyTorch (baseline)"})}))
    elapsed = time.perf_counter() - t0
    base = per_entry[0] if registry.precision(entries[0][0].recipe.precision).is_baseline else None
    for (exp, result, deployed), speed in zip(entries, per_entry):
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
            "method": (f"per-step denoiser latency (mean of {STEP_CALLS} calls) and end-to-end denoising latency "
                       f"({ctx.gen.steps} {ctx.model.describe(ctx.gen)['sampler']} steps; no text encoding or VAE), {WARMUP} warm-up runs, baseline and recipes alternating run by run, "
                       f"medians of {REPEATS}-{MAX_REPEATS} runs; speedup refused when a side varies by over 10%"),
            "measurements": [m.to_dict() for m in speed]}
        scope = getattr(deployed, "kernel_info", {}).get("covers")
        if scope:  # a partial deployment (FP8 on a GPU: linear layers only) says what its speedup is of
            result.provenance["speed"]["scope"] = scope
        result.timings["benchmark_s"] = elapsed / len(entries)
        store.save_result(result)
    progress(1.0, "speed measured")


# --- TensorRT (engine/runtimes/tensorrt): the denoiser exported to ONNX, built and timed by trtexec ---

def _check_exportable(source) -> None:
    """SpecError when the TensorRT path cannot export this pipeline's UNet (from its config file alone)."""
    import json
    from types import SimpleNamespace

    from engine.runtimes.tensorrt.onnx_export import unsupported

    config = json.loads((source.layout.unet_dir / "config.json").read_text())
    why = unsupported(SimpleNamespace(**{k: v for k, v in config.items() if not k.startswith("_")}))
    if why:
        raise SpecError(why)


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
    # a text-to-image UNet is exported for the prompt length its pipeline pads to (CLIP: 77 tokens)
    prompts = getattr(ctx.model, "conditioning", None) == "prompts"
    tokens = getattr(getattr(ctx.model, "tokenizer", None), "model_max_length", None) if prompts else None
    runtime = TensorRTRuntime(device=ctx.device, text_tokens=tokens)
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
