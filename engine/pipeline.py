"""One sweep: load once, tokenize once, evaluate the baseline once, then each recipe from pristine
weights; results go to the store as they finish. Finished specs are reused, not recomputed.
"""

import copy
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from engine import registry
from engine.cpu_threads import job_threads
from engine.errors import TlabError, UnsupportedOnDevice
from engine.provenance import describe_device, resolve_device, versions
from engine.quantize import apply_recipe, check_runnable, round_to_bf16
from engine.spec import DataSpec, ExperimentSpec, ModelRef, Recipe, Workload

BASELINE = Recipe("bf16", "none", "auto")
Progress = Callable[[float, str], None]
RUNTIME_ALIASES = {"pytorch": "torch"}


def grid(precisions: list[str], sparsities: list[str], kv_cache: str = "auto") -> list[Recipe]:
    """The recipes of a sweep: every precision x sparsity, baseline first, no duplicates."""
    recipes = [BASELINE]
    for p in precisions:
        for s in sparsities:
            r = Recipe(p, s, kv_cache if p not in registry.BASELINES or kv_cache != "auto" else "auto")
            if r not in recipes:
                recipes.append(r)
    return recipes


def parse_recipe(text: str, kv_cache: str = "auto") -> Recipe:
    """'int4_awq', 'bf16+sparsegpt' or 'fp8+none' -> Recipe."""
    precision, _, sparsity = text.partition("+")
    return Recipe(precision, sparsity or "none", kv_cache)


def plan(model: ModelRef, recipes: list[Recipe], data: DataSpec, workload: Workload | None,
         device: str) -> list[ExperimentSpec]:
    if BASELINE not in recipes:
        recipes = [BASELINE, *recipes]
    return [ExperimentSpec(model, r, data, workload, device) for r in recipes]


def run_sweep(model: ModelRef, recipes: list[Recipe], data: DataSpec, store: Any, *,
              experiment: str | None = None, workload: Workload | None = None, backend: str = "pytorch",
              device: str = "auto", progress: Progress | None = None, force: bool = False) -> list[dict]:
    """Run (or reuse) every recipe and return the result records, baseline first.

    Everything that can be checked is checked before any work, so bad input leaves the store as it was.
    Accuracy records are saved as each recipe finishes; with a workload, the speed stage then
    benchmarks the baseline and every measurable recipe side by side and adds speed to the records.
    """
    from engine.models.loader import resolve

    progress = progress or (lambda f, s: None)
    device = resolve_device(device)
    loc = resolve(model)  # fails fast on a missing folder or pickle-only weights
    specs = plan(model, recipes, data, workload, device)
    for s in specs:
        check_runnable(s.recipe, device)
    runtime, unmeasurable = _runtime_for(backend, specs, device) if workload is not None else (None, {})
    experiment = experiment or f"{loc.name} sweep"
    todo = [s for s in specs if force or not store.has_result(s.id)]
    if todo and workload is not None and specs[0] not in todo:
        todo.insert(0, specs[0])  # speedups need the baseline measured in the same run
    if not todo:
        progress(1.0, "all results already in the store")
        return [store.get_result(s.id) for s in specs]

    store.ensure_experiment(experiment, loc.name, {"data": data.__dict__})
    with job_threads(device) as threads:  # CPU: only the cores other programs leave free
        ctx = _Context.load(model, data, device, progress, threads)
        acc_share = 0.8 if runtime is None else 0.6
        to_benchmark = []
        for n, spec in enumerate(todo):
            start, width = 0.2 + acc_share * n / len(todo), acc_share / len(todo)
            record, calibrated = _run_one(ctx, spec, experiment, loc.name,
                                          lambda f, s, a=start, w=width: progress(a + w * f, s))
            if runtime is not None:
                if spec.recipe in unmeasurable:
                    record["provenance"]["speed_not_measured"] = unmeasurable[spec.recipe]
                else:
                    to_benchmark.append((spec, record, _prepare_for_runtime(runtime, calibrated, spec.recipe)))
            store.save_result(record)
            del calibrated
            _release_memory()  # modelopt's quantized copy holds cycles; free it before the next recipe
        if to_benchmark:
            _speed_stage(runtime, to_benchmark, store, lambda f, s: progress(0.8 + 0.2 * f, s))
        progress(1.0, "done")
        return [store.get_result(s.id) for s in specs]


def _release_memory() -> None:
    import ctypes
    import gc

    gc.collect()
    try:  # hand freed heap pages back to the OS so peak RSS reflects live data (glibc only)
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _runtime_for(backend: str, specs: list[ExperimentSpec], device: str):
    """The runtime, and {recipe: reason} for recipes it cannot measure here (they keep their accuracy)."""
    from engine.runtimes import get_runtime

    runtime = get_runtime(RUNTIME_ALIASES.get(backend, backend))
    base = runtime.availability(BASELINE.precision, BASELINE.sparsity)
    if not base.ok:
        raise UnsupportedOnDevice(f"Cannot benchmark with {runtime.label} here: {base.reason}")
    unmeasurable = {}
    for s in specs:
        avail = runtime.availability(s.recipe.precision, s.recipe.sparsity)
        if not avail.ok:
            unmeasurable[s.recipe] = f"{runtime.label} cannot measure {s.recipe.label} here: {avail.reason}"
    return runtime, unmeasurable


def _prepare_for_runtime(runtime, calibrated, recipe: Recipe):
    """What the runtime benchmarks later: a deployed copy (PyTorch) or the calibrated model itself."""
    if hasattr(runtime, "deploy"):
        return runtime.deploy(calibrated, recipe.precision)
    return calibrated


def _speed_stage(runtime, entries: list, store: Any, progress: Progress) -> None:
    """Benchmark baseline and recipes on the same device with the same workload; add speed to records."""
    import time as _time

    workload = entries[0][0].workload
    t0 = _time.perf_counter()
    say = _AnyProgress(progress)
    if hasattr(runtime, "compare"):  # runs interleaved round by round: drift hits all alike
        results = runtime.compare([(m, spec.recipe) for spec, _, m in entries], workload, say)
    else:
        results = [runtime.benchmark(m, spec.recipe, workload, say) for spec, _, m in entries]
    baseline = results[0] if entries[0][0].recipe == BASELINE else None
    elapsed = _time.perf_counter() - t0
    for (spec, record, _), speed in zip(entries, results):
        record["metrics"].update(_speed_metrics(speed, baseline))
        record["provenance"]["speed"] = _speed_provenance(speed, baseline)
        record["timings"]["benchmark_s"] = elapsed / len(entries)
        store.save_result(record)


class _AnyProgress:
    """Runtimes report either (fraction, message) or (message); the sweep shows both."""

    def __init__(self, progress: Progress):
        self.progress, self.last = progress, 0.0

    def __call__(self, *args):
        if len(args) == 2:
            self.last = float(args[0])
            self.progress(self.last, str(args[1]))
        else:
            self.progress(self.last, str(args[0]))


class _Context:
    """What a sweep shares: the pristine model, tokenized data, and the baseline reference."""

    def __init__(self, loaded, data, reference, device, timings, threads=None):
        self.loaded, self.data, self.reference, self.device, self.timings = loaded, data, reference, device, timings
        self.threads = threads  # (number, why) on CPU

    @classmethod
    def load(cls, model: ModelRef, data_spec: DataSpec, device: str, progress: Progress,
             threads: tuple[int, str] | None = None) -> "_Context":
        import torch

        from engine import evaluate
        from engine.data import prepare
        from engine.models import load_model

        torch.manual_seed(data_spec.seed)
        t0 = time.perf_counter()
        progress(0.0, "loading the model" + (f" on {threads[1]}" if threads else ""))
        loaded = load_model(model, device=device, dtype=torch.bfloat16 if device.startswith("cuda") else None)
        round_to_bf16(loaded.model)
        t1 = time.perf_counter()
        progress(0.05, "tokenizing calibration and evaluation text")
        data = prepare(loaded.tokenizer, data_spec)
        ref = evaluate.reference(loaded.model, data.eval_ids, lambda f, s: progress(0.05 + 0.15 * f, s))
        t2 = time.perf_counter()
        return cls(loaded, data, ref, device, {"load_s": t1 - t0, "baseline_s": t2 - t1}, threads)


def _run_one(ctx: _Context, spec: ExperimentSpec, experiment: str, model_name: str,
             progress: Progress) -> tuple[dict, Any]:
    """Calibrate (unless baseline) and evaluate one recipe: its record and the calibrated model."""
    import torch

    from engine import evaluate

    torch.manual_seed(spec.data.seed)
    timings = dict(ctx.timings) if spec.recipe == BASELINE else {}
    if spec.recipe == BASELINE:
        model, metrics = ctx.loaded.model, evaluate.reference_metrics(ctx.reference, ctx.data.eval_ids)
    else:
        t0 = time.perf_counter()
        model = apply_recipe(copy.deepcopy(ctx.loaded.model), spec.recipe, ctx.data.calib,
                             lambda f, s: progress(0.7 * f, s))
        t1 = time.perf_counter()
        metrics = evaluate.compare(model, ctx.data.eval_ids, ctx.reference,
                                   lambda f, s: progress(0.7 + 0.3 * f, f"{s} {spec.recipe.label}"))
        timings.update(calibrate_s=t1 - t0, evaluate_s=time.perf_counter() - t1)
    record = {
        "id": spec.id, "experiment": experiment, "model": model_name,
        "precision": spec.recipe.precision, "sparsity": spec.recipe.sparsity, "kv_cache": spec.recipe.kv_cache,
        "spec": spec.to_dict(), "metrics": metrics, "provenance": {"accuracy": _accuracy_provenance(ctx, spec)},
        "timings": timings, "device": describe_device(ctx.device), "versions": versions(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return record, model


def _accuracy_provenance(ctx: _Context, spec: ExperimentSpec) -> dict:
    simulated = registry.precision(spec.recipe.precision).modelopt_cfg is not None or spec.recipe.kv_cache != "auto"
    how = ("modelopt simulated (fake) quantization in PyTorch" if simulated
           else "PyTorch, weights rounded to the recipe's precision")
    extra = {"cpu_threads": ctx.threads[0], "cpu_threads_note": ctx.threads[1]} if ctx.threads else {}
    return {
        **extra,
        "kind": "measured", "device": describe_device(ctx.device), "engine": how, "versions": versions(),
        "method": (f"perplexity, KL divergence and top-1 agreement against the bf16 baseline on "
                   f"{ctx.data.eval_tokens} held-out tokens of '{ctx.data.source}'"),
    }


def _speed_metric(m) -> str:
    from engine.runtimes.base import speed_metric_of

    return speed_metric_of(m.metrics)


def _speed_metrics(speed: list, baseline: list) -> dict[str, float]:
    from engine.runtimes.base import speedup

    out: dict[str, float] = {}
    base_by_bs = {m.batch_size: m for m in baseline or []}
    for i, m in enumerate(speed):
        for k, v in m.metrics.items():
            if v is not None:
                out[f"{k}_bs{m.batch_size}"] = float(v)
        b = base_by_bs.get(m.batch_size)
        ratio, _ = speedup(b, m, _speed_metric(m)) if b is not None else (None, None)
        if ratio is not None:
            out[f"speedup_bs{m.batch_size}"] = ratio
            if i == 0:
                out["speedup"] = ratio
    return out


def _speed_provenance(speed: list, baseline: list) -> dict:
    from engine.runtimes.base import speedup

    first = speed[0].provenance if speed else {}
    base_by_bs = {m.batch_size: m for m in baseline or []}
    refused = {}
    for m in speed:
        b = base_by_bs.get(m.batch_size)
        if b is None:
            refused[str(m.batch_size)] = "no baseline measured at this batch size in this run"
            continue
        _, why = speedup(b, m, _speed_metric(m))
        if why:
            refused[str(m.batch_size)] = why
    return {**first, "kind": "measured", "speedup_metric": _speed_metric(speed[0]) if speed else None,
            "speedup_refused": refused, "measurements": [m.to_dict() for m in speed]}


def run_sweep_job(payload: dict, progress: Callable) -> list[str]:
    """Job entry point (engine.jobs): the payload is plain JSON, see `sweep_payload`."""
    from engine.store import open_store

    wl = payload.get("workload")
    records = run_sweep(
        ModelRef(**payload.get("model", {})),
        [Recipe(**r) for r in payload["recipes"]],
        DataSpec(**payload.get("data", {})),
        open_store(payload.get("store_url")),
        experiment=payload.get("experiment"),
        workload=Workload(**{**wl, "batch_sizes": tuple(wl["batch_sizes"])}) if wl and payload.get("benchmark") else None,
        backend=payload.get("backend", "pytorch"),
        progress=lambda f, s: progress(f, s),
    )
    return [r["id"] for r in records]


def sweep_payload(model: ModelRef, recipes: list[Recipe], data: DataSpec, *, experiment: str | None = None,
                  workload: Workload | None = None, benchmark: bool = False, backend: str = "pytorch") -> dict:
    import dataclasses

    return {"experiment": experiment, "model": dataclasses.asdict(model),
            "recipes": [dataclasses.asdict(r) for r in recipes], "data": dataclasses.asdict(data),
            "workload": dataclasses.asdict(workload) if workload else None, "benchmark": benchmark,
            "backend": backend}


__all__ = ["run_sweep", "run_sweep_job", "grid", "plan", "sweep_payload", "TlabError"]
