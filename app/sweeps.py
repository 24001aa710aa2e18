"""Sweep jobs: the payload engine.pipeline:run_sweep_job takes, built from the Experiment page's
choices, and the demo sweep. Pure functions except `queue_demo`."""

from __future__ import annotations

import itertools
import time

from engine import registry
from engine.spec import BUNDLED_MODEL, DataSpec, ModelRef, Recipe, Workload

DEMO_PREFERENCE = ("fp8", "int8_sq", "int4_awq")  # the demo takes the first two this machine can time
DEMO_DATA = {"calib_size": 4, "calib_seq_len": 64, "eval_tokens": 1024, "eval_seq_len": 256}
DEMO_WORKLOAD = {"input_len": 32, "output_len": 16, "batch_sizes": [1]}
DEMO_DESCRIPTION = (
    "The demo calibrates the **bundled model** (SmolLM2-135M, shipped with the app, no download) in two "
    "precisions this machine has fast kernels for, on a small slice of the bundled text (4 calibration "
    "sequences of 64 tokens, 1,024 evaluation tokens). It measures each one's perplexity against the BF16 "
    "baseline and times all three (batch 1, 32 tokens in, 16 out). It takes a few minutes on a laptop "
    "CPU; you can watch it on the Jobs page."
)


def experiment_name(prefix: str = "sweep") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def recipe_grid(precisions: list[str], sparsities: list[str], kv_caches: list[str]) -> list[Recipe]:
    """Every combination, baseline excluded (the pipeline always runs the baseline itself)."""
    grid = [Recipe(p, s, k) for p, s, k in itertools.product(precisions, sparsities or ["none"],
                                                             kv_caches or ["auto"])]
    return [r for r in grid if not r.is_baseline]


def sweep_payload(experiment: str, model: ModelRef, recipes: list[Recipe], data: DataSpec,
                  workload: Workload | None, backend: str = "pytorch") -> dict:
    """The JSON payload of one sweep job (see engine.pipeline.run_sweep_job)."""
    return {
        "experiment": experiment,
        "model": {"source": model.source, "revision": model.revision, "gguf_file": model.gguf_file,
                  "trust_remote_code": model.trust_remote_code},
        "recipes": [{"precision": r.precision, "sparsity": r.sparsity, "kv_cache": r.kv_cache} for r in recipes],
        "data": {"source": data.source, "calib_size": data.calib_size, "calib_seq_len": data.calib_seq_len,
                 "eval_tokens": data.eval_tokens, "eval_seq_len": data.eval_seq_len, "seed": data.seed},
        "workload": None if workload is None else {
            "input_len": workload.input_len, "output_len": workload.output_len,
            "batch_sizes": list(workload.batch_sizes)},
        "benchmark": workload is not None,
        "backend": backend,
    }


def sweep_title(model: ModelRef, recipes: list[Recipe]) -> str:
    model_name = "bundled model" if model.source == BUNDLED_MODEL else model.source
    labels = ", ".join(r.label for r in recipes[:4]) + (f" and {len(recipes) - 4} more" if len(recipes) > 4 else "")
    return f"{model_name}: {labels}"


def demo_precisions(choices) -> list[str]:
    """The demo's precisions: the first two of DEMO_PREFERENCE that this device can calibrate and time
    (from engine.devices.precision_choices(..., backend="pytorch")); accuracy-only ones if none can be timed."""
    by_name = {c.name: c for c in choices}
    timed = [p for p in DEMO_PREFERENCE if p in by_name and by_name[p].runnable and by_name[p].speed_ok]
    if timed:
        return timed[:2]
    return [p for p in DEMO_PREFERENCE if p in by_name and by_name[p].runnable][:2]


def demo_payload(choices, experiment: str | None = None) -> tuple[dict, str]:
    precisions = demo_precisions(choices)
    by_name = {c.name: c for c in choices}
    timed = all(by_name[p].speed_ok for p in precisions)
    recipes = recipe_grid(precisions, ["none"], ["auto"])
    model = ModelRef(BUNDLED_MODEL)
    workload = Workload(DEMO_WORKLOAD["input_len"], DEMO_WORKLOAD["output_len"],
                        tuple(DEMO_WORKLOAD["batch_sizes"])) if timed else None
    payload = sweep_payload(experiment or experiment_name("demo"), model, recipes, DataSpec(**DEMO_DATA),
                            workload, "pytorch")
    return payload, "Demo sweep: " + sweep_title(model, recipes)


def queue_demo() -> int:
    from app import state

    payload, title = demo_payload(state.precision_choices("pytorch"))
    return state.queue_sweep(payload, title)


def precision_label(name: str) -> str:
    return registry.precision(name).label
