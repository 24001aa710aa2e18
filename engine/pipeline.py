"""One sweep: load once, tokenize once, evaluate the baseline once, then each recipe from pristine
weights; results go to the store as they finish. Finished specs are reused, not recomputed.
"""

import copy
import importlib
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from engine import registry
from engine.access import check_web_sweep
from engine.auth import current_owner
from engine.cpu_threads import job_threads
from engine.errors import SpecError, TlabError, UnsupportedOnDevice
from engine.system import describe_device, resolve_device, versions
from engine.quantize import apply_recipe, check_runnable, round_to_bf16
from engine.spec import DataSpec, ExperimentSpec, ModelRef, Recipe, SweepSpec
from engine.reuse import results_to_compute
from engine.store.entities import PARTIAL, Result

BASELINE = Recipe("bf16", "none", "auto")
Progress = Callable[[float, str], None]


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


def run_sweep(spec: SweepSpec, store: Any, progress: Progress | None = None, *,
              force: bool = False) -> list[Result]:
    """Run (or reuse) every recipe of `spec` and return the results, baseline first.

    The one entry for every caller (CLI, app job, benchmarks): the spec's model kind names the
    runner that does the work (registry.MODEL_KINDS).
    """
    if not isinstance(spec, SweepSpec):
        raise SpecError(f"run_sweep takes a SweepSpec, got {type(spec).__name__}.")
    kind = registry.model_kind(spec.kind)
    module, fn = kind.sweep_runner.split(":")
    try:
        runner = getattr(importlib.import_module(module), fn)
    except ImportError as exc:  # e.g. diffusers not installed: say which extra brings it
        raise UnsupportedOnDevice(f"{kind.label} sweeps cannot run in this install ({exc}). Install the "
                                  f"package's extra for them, e.g. pip install 'tradeoff-lab[{kind.extra}]'."
                                  if kind.extra else f"{kind.label} sweeps cannot run in this install ({exc}).") from None
    return runner(spec, store, progress or (lambda f, s: None), force=force)


def run_causal_lm_sweep(spec: SweepSpec, store: Any, progress: Progress, *, force: bool = False) -> list[Result]:
    """A language-model sweep: load once, tokenize once, evaluate the baseline once, then each recipe
    from pristine weights.

    Everything that can be checked is checked before any work, so bad input leaves the store as it was.
    Accuracy results are saved as each recipe finishes; with a workload, the speed stage then
    benchmarks the baseline and every measurable recipe side by side and adds speed to the results.
    """
    from engine.models.loader import resolve

    device = resolve_device(spec.device)
    loc = resolve(spec.model)  # fails fast on a missing folder or pickle-only weights
    specs = spec.replace(device=device).experiments()
    for s in specs:
        check_runnable(s.recipe, device)
    if spec.tasks is not None:  # lm-eval installed, every task name known: before any work
        from engine.task_accuracy import check_tasks

        check_tasks(spec.tasks)
    workload = spec.workload
    runtime, unmeasurable = _runtime_for(spec.runtime, specs, device) if workload is not None else (None, {})
    experiment = spec.experiment or f"{loc.name} sweep"
    todo = results_to_compute(specs, store, workload is not None, force, progress)
    if not todo:
        return [store.get_result(s.id) for s in specs]

    store.ensure_experiment(experiment, loc.name, {"data": spec.data.__dict__})
    with job_threads(device) as threads:  # CPU: only the cores other programs leave free
        ctx = _Context.load(spec.model, spec.data, device, progress, threads)
        ctx.task_baseline = _baseline_tasks(ctx, spec, progress)
        acc_share = 0.8 if runtime is None else 0.6
        to_benchmark, results = [], []
        for n, exp in enumerate(todo):
            start, width = 0.2 + acc_share * n / len(todo), acc_share / len(todo)
            result, calibrated = _run_one(ctx, exp, experiment, loc.name,
                                          lambda f, s, a=start, w=width: progress(a + w * f, s))
            if runtime is not None:
                if exp.recipe in unmeasurable:
                    result.provenance["speed_not_measured"] = unmeasurable[exp.recipe]
                else:
                    to_benchmark.append((exp, result, runtime.deploy(calibrated, exp.recipe)))
            result.status = PARTIAL  # until the whole sweep is done: a cancelled one leaves them marked
            store.save_result(result)
            results.append(result)
            del calibrated
            _release_memory()  # modelopt's quantized copy holds cycles; free it before the next recipe
        if to_benchmark:
            _speed_stage(runtime, to_benchmark, store, lambda f, s: progress(0.8 + 0.2 * f, s))
        for result in results:
            result.status = "done"
        store.save_results(results)  # one transaction: the sweep's results become final together
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

    runtime = get_runtime(backend, device=device)
    base = runtime.availability(BASELINE.precision, BASELINE.sparsity)
    if not base.ok:
        raise UnsupportedOnDevice(f"Cannot benchmark with {runtime.label} here: {base.reason}")
    unmeasurable = {}
    for s in specs:
        avail = runtime.availability(s.recipe.precision, s.recipe.sparsity)
        if not avail.ok:
            unmeasurable[s.recipe] = f"{runtime.label} cannot measure {s.recipe.label} here: {avail.reason}"
    return runtime, unmeasurable


def _speed_stage(runtime, entries: list, store: Any, progress: Progress) -> None:
    """Benchmark baseline and recipes on the same device with the same workload; add speed to results."""
    workload = entries[0][0].workload
    t0 = time.perf_counter()
    results = runtime.compare([(deployed, exp.recipe) for exp, _, deployed in entries], workload, progress)
    baseline = results[0] if entries[0][0].recipe == BASELINE else None
    elapsed = time.perf_counter() - t0
    for (_, result, _), speed in zip(entries, results):
        result.metrics.update(_speed_metrics(speed, baseline))
        result.provenance["speed"] = _speed_provenance(speed, baseline)
        result.timings["benchmark_s"] = elapsed / len(entries)
        store.save_result(result)


class _Context:
    """What a sweep shares: the pristine model, tokenized data, and the baseline reference."""

    def __init__(self, loaded, data, reference, device, timings, threads=None):
        self.loaded, self.data, self.reference, self.device, self.timings = loaded, data, reference, device, timings
        self.threads = threads  # (number, why) on CPU
        self.task_baseline = None  # {task: TaskScore} of the baseline when the spec asks for tasks

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
             progress: Progress) -> tuple[Result, Any]:
    """Calibrate (unless baseline) and evaluate one recipe: its result and the calibrated model."""
    import torch

    from engine import evaluate

    torch.manual_seed(spec.data.seed)
    timings = dict(ctx.timings) if spec.recipe == BASELINE else {}
    if spec.recipe == BASELINE:
        model, metrics = ctx.loaded.model, evaluate.reference_metrics(ctx.reference, ctx.data.eval_ids)
    else:
        t0 = time.perf_counter()
        progress(0.0, f"applying {spec.recipe.label}")  # modelopt's setup takes a while before its first batch
        model = apply_recipe(copy.deepcopy(ctx.loaded.model), spec.recipe, ctx.data.calib,
                             lambda f, s: progress(0.7 * f, s))
        t1 = time.perf_counter()
        metrics = evaluate.compare(model, ctx.data.eval_ids, ctx.reference,
                                   lambda f, s: progress(0.7 + 0.3 * f, f"{s} {spec.recipe.label}"))
        timings.update(calibrate_s=t1 - t0, evaluate_s=time.perf_counter() - t1)
    provenance = {"accuracy": _accuracy_provenance(ctx, spec)}
    if spec.tasks is not None:
        metrics, provenance = _with_tasks(ctx, spec, model, metrics, provenance, timings, progress)
    result = Result(
        id=spec.id, experiment=experiment, model=model_name, precision=spec.recipe.precision,
        sparsity=spec.recipe.sparsity, kv_cache=spec.recipe.kv_cache, spec=spec.to_dict(), metrics=metrics,
        provenance=provenance, timings=timings,
        device=describe_device(ctx.device), versions=versions(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        owner=current_owner(),  # who started the job (the worker's TLAB_OWNER), never the payload
    )
    return result, model


def _baseline_tasks(ctx: _Context, spec: SweepSpec, progress: Progress) -> dict | None:
    """The baseline's task scores, once per sweep (like the perplexity reference): every recipe's
    loss in points is taken against them, even when the baseline's own result is reused."""
    if spec.tasks is None:
        return None
    from engine.task_accuracy import score_tasks

    t0 = time.perf_counter()
    progress(0.2, f"scoring the baseline on {', '.join(spec.tasks.names)} (lm-eval)")
    scores = score_tasks(ctx.loaded.model, ctx.loaded.tokenizer, spec.tasks)
    ctx.timings["baseline_tasks_s"] = time.perf_counter() - t0
    return scores


def _with_tasks(ctx: _Context, spec: ExperimentSpec, model: Any, metrics: dict, provenance: dict,
                timings: dict, progress: Progress) -> tuple[dict, dict]:
    """Metrics and provenance with the recipe's task accuracy and its loss in points vs the baseline."""
    from engine.task_accuracy import result_metrics, result_provenance, score_tasks

    if spec.recipe == BASELINE:
        scores = ctx.task_baseline
    else:
        t0 = time.perf_counter()
        progress(1.0, f"scoring {spec.recipe.label} on {', '.join(spec.tasks.names)} (lm-eval)")
        scores = score_tasks(model, ctx.loaded.tokenizer, spec.tasks)
        timings["tasks_s"] = time.perf_counter() - t0
    return ({**metrics, **result_metrics(ctx.task_baseline, scores)},
            {**provenance, "task_accuracy": result_provenance(scores, describe_device(ctx.device))})


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
            spread = _speedup_spread(b, m)
            if spread is not None:
                out[f"speedup_spread_bs{m.batch_size}"] = spread
            if i == 0:
                out["speedup"] = ratio
                if spread is not None:
                    out["speedup_spread"] = spread
    bits = COMPUTE_BITS.get(str(speed[0].provenance.get("compute_dtype"))) if speed else None
    if bits:  # what the unquantized parts computed in: a CPU "BF16" baseline runs in FP32
        out["speed_compute_bits"] = float(bits)
    return out


def _speedup_spread(base, m) -> float | None:
    """The relative run-to-run spread of a speedup (a ratio of two medians): the two sides' relative
    spreads added in quadrature, as relative errors of a ratio of independent measurements combine.
    The baseline against itself is exactly 1, with no spread."""
    import math

    if base is m:
        return None
    metric = _speed_metric(m)
    sb, sc = base.spread.get(metric), m.spread.get(metric)
    return None if sb is None or sc is None else math.hypot(sb, sc)


COMPUTE_BITS = {"float32": 32, "bfloat16": 16, "float16": 16}


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
    """Job entry point (engine.jobs): the payload is {"spec": SweepSpec.to_dict()}, validated like any
    user input, and held to the web policy (engine.access): local paths only under the allowed folders,
    a model's own code only where the administrator allows it. Results go to the store the job runs
    against ($TLAB_STORE_URL, set by the worker), never one a payload names."""
    from engine.store import open_store

    if not isinstance(payload, dict) or set(payload) != {"spec"}:
        raise SpecError("A sweep job's payload must be {\"spec\": <sweep spec>}; queue the sweep again "
                        "from the app or with `tlab sweep`.")
    spec = SweepSpec.from_dict(payload["spec"])
    check_web_sweep(spec.model, spec.data)  # a job row is web input: only what the administrator allows
    return [r.id for r in run_sweep(spec, open_store(), lambda f, s: progress(f, s))]


def sweep_payload(spec: SweepSpec) -> dict:
    """The job payload of a sweep (see run_sweep_job)."""
    return {"spec": spec.to_dict()}


__all__ = ["run_sweep", "run_sweep_job", "grid", "sweep_payload", "TlabError"]
