"""How long a sweep will take: from the per-stage timings of earlier runs on this device when there
are any (scaled by the amount of work), else from a stated rough default.

A sweep loads the model once, evaluates the baseline once, then per recipe: calibrates, evaluates
and (if asked) benchmarks. Pipeline records carry "timings": {load_s, baseline_s, calibrate_s,
evaluate_s, benchmark_s} and their spec (data sizes, workload), from which per-token rates are taken.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

# Rough defaults: the bundled 135M model on a 2-core CPU (seconds, or seconds per token of work).
DEFAULT_RATES = {"load_s": 20.0, "baseline_s_per_token": 0.004, "calibrate_s_per_token": 0.01,
                 "evaluate_s_per_token": 0.006, "benchmark_s_per_step": 0.15}
DEFAULT_BASIS = "rough default for the bundled 135M model on a 2-core CPU (no earlier runs on this device yet)"


@dataclass(frozen=True)
class TimeEstimate:
    seconds: float
    basis: str  # how it was made, shown next to the number
    from_history: bool
    runs_used: int = 0


def _work(data: dict, workload: dict | None) -> dict[str, float]:
    calib = float(data.get("calib_size", 32)) * float(data.get("calib_seq_len", 256))
    evaluate = float(data.get("eval_tokens", 8192))
    steps = 0.0
    if workload:  # decode steps summed over batch sizes (prefill counted as one step each)
        steps = float(len(workload.get("batch_sizes") or [1])) * (float(workload.get("output_len", 64)) + 1)
    return {"calib": calib, "eval": evaluate, "steps": steps}


def rates_from_history(records: list[dict]) -> tuple[dict[str, float], int]:
    """Median per-token rates from earlier records with timings (and how many records gave them)."""
    samples: dict[str, list[float]] = {k: [] for k in DEFAULT_RATES}
    used = 0
    for r in records:
        t = r.get("timings") or {}
        spec = r.get("spec") or {}
        if not t:
            continue
        used += 1
        work = _work(spec.get("data") or {}, spec.get("workload"))
        if t.get("load_s"):
            samples["load_s"].append(float(t["load_s"]))
        for stage, key, amount in (("baseline_s", "baseline_s_per_token", work["eval"]),
                                   ("calibrate_s", "calibrate_s_per_token", work["calib"]),
                                   ("evaluate_s", "evaluate_s_per_token", work["eval"]),
                                   ("benchmark_s", "benchmark_s_per_step", work["steps"])):
            if t.get(stage) and amount:
                samples[key].append(float(t[stage]) / amount)
    rates = {k: statistics.median(v) for k, v in samples.items() if v}
    return rates, used


def estimate_sweep(n_recipes: int, data: dict, workload: dict | None, history: list[dict] | None = None,
                   device: str | None = None) -> TimeEstimate:
    """Seconds for a sweep of `n_recipes` non-baseline recipes (the baseline runs once anyway)."""
    rates, used = rates_from_history(history or [])
    merged = {**DEFAULT_RATES, **rates}
    work = _work(data, workload)
    total = merged["load_s"] + merged["baseline_s_per_token"] * work["eval"]
    total += merged["benchmark_s_per_step"] * work["steps"]  # the baseline is benchmarked too
    per_recipe = (merged["calibrate_s_per_token"] * work["calib"] + merged["evaluate_s_per_token"] * work["eval"]
                  + merged["benchmark_s_per_step"] * work["steps"])
    total += per_recipe * max(0, n_recipes)
    if used:
        where = f" on {device}" if device else ""
        missing = sorted(set(DEFAULT_RATES) - set(rates))
        basis = f"from the stage timings of {used} earlier result(s){where}"
        if missing:
            basis += f" (rough defaults for stages never timed: {', '.join(m.split('_s')[0] for m in missing)})"
        return TimeEstimate(total, basis, True, used)
    return TimeEstimate(total, DEFAULT_BASIS, False, 0)


def same_device(record_device: str | None, device: str) -> bool:
    """Whether a stored result's device string names this device ('cpu' matches any CPU label)."""
    if not record_device:
        return False
    a, b = str(record_device).lower(), device.lower()
    if b == "cpu":
        return a.startswith("cpu")
    return b in a or a in b


def format_duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"about {max(1, round(seconds / 5) * 5):.0f} s"
    if seconds < 5400:
        return f"about {round(seconds / 60):.0f} min"
    return f"about {seconds / 3600:.1f} h"
