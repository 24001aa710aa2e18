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
                 "evaluate_s_per_token": 0.006, "benchmark_s_per_step": 0.15,
                 "tasks_s_per_question": 0.5}
DEFAULT_BASIS = "rough default for the bundled 135M model on a 2-core CPU (no earlier runs on this device yet)"


@dataclass(frozen=True)
class TimeEstimate:
    seconds: float
    basis: str  # how it was made, shown next to the number
    from_history: bool
    runs_used: int = 0


OFFLINE_TASK_QUESTIONS = 400  # engine/tasks/doc_continuation
OTHER_TASK_QUESTIONS = 1000  # a task without a limit whose size is unknown up front: a rough guess


def _questions(tasks: dict | None) -> float:
    """Questions scored per model (the baseline and each recipe) for a TaskAccuracySpec dict."""
    if not tasks:
        return 0.0
    total = 0.0
    for name in tasks.get("names") or []:
        size = OFFLINE_TASK_QUESTIONS if name == "tlab_doc_continuation" else OTHER_TASK_QUESTIONS
        total += min(size, tasks["limit"]) if tasks.get("limit") else size
    return total


def _work(data: dict, workload: dict | None, tasks: dict | None = None) -> dict[str, float]:
    calib = float(data.get("calib_size", 32)) * float(data.get("calib_seq_len", 256))
    evaluate = float(data.get("eval_tokens", 8192))
    steps = 0.0
    if workload:  # decode steps summed over batch sizes (prefill counted as one step each)
        steps = float(len(workload.get("batch_sizes") or [1])) * (float(workload.get("output_len", 64)) + 1)
    return {"calib": calib, "eval": evaluate, "steps": steps, "questions": _questions(tasks)}


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
        work = _work(spec.get("data") or {}, spec.get("workload"), spec.get("tasks"))
        if t.get("load_s"):
            samples["load_s"].append(float(t["load_s"]))
        for stage, key, amount in (("baseline_s", "baseline_s_per_token", work["eval"]),
                                   ("calibrate_s", "calibrate_s_per_token", work["calib"]),
                                   ("evaluate_s", "evaluate_s_per_token", work["eval"]),
                                   ("benchmark_s", "benchmark_s_per_step", work["steps"]),
                                   ("baseline_tasks_s", "tasks_s_per_question", work["questions"]),
                                   ("tasks_s", "tasks_s_per_question", work["questions"])):
            if t.get(stage) and amount:
                samples[key].append(float(t[stage]) / amount)
    rates = {k: statistics.median(v) for k, v in samples.items() if v}
    return rates, used


def estimate_sweep(n_recipes: int, data: dict, workload: dict | None, history: list[dict] | None = None,
                   device: str | None = None, tasks: dict | None = None) -> TimeEstimate:
    """Seconds for a sweep of `n_recipes` non-baseline recipes (the baseline runs once anyway); `tasks` is
    the spec's task-accuracy part (dict), scored for the baseline and every recipe."""
    rates, used = rates_from_history(history or [])
    merged = {**DEFAULT_RATES, **rates}
    work = _work(data, workload, tasks)
    scoring = merged["tasks_s_per_question"] * work["questions"]
    total = merged["load_s"] + merged["baseline_s_per_token"] * work["eval"] + scoring
    total += merged["benchmark_s_per_step"] * work["steps"]  # the baseline is benchmarked too
    per_recipe = (merged["calibrate_s_per_token"] * work["calib"] + merged["evaluate_s_per_token"] * work["eval"]
                  + merged["benchmark_s_per_step"] * work["steps"] + scoring)
    total += per_recipe * max(0, n_recipes)
    if used:
        where = f" on {device}" if device else ""
        missing = sorted(set(DEFAULT_RATES) - set(rates) - (set() if work["questions"] else {"tasks_s_per_question"}))
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


# Time left while a job runs. Early fractions say little about the rate (loading the model is slow
# and counts for little), so the up-front estimate leads at first and the observed rate takes over
# as the job advances; with no estimate, nothing is said until enough of the job has been seen.
OBSERVED_TRUSTED_AT = 0.5  # fraction done from which only the observed rate counts
MIN_OBSERVED_FRACTION = 0.1  # without an estimate, say nothing before this much is done...
MIN_OBSERVED_S = 5.0  # ...or before this many seconds


def remaining_seconds(fraction: float | None, elapsed_s: float | None, estimate_s: float | None = None) -> float | None:
    """Seconds left for a job `fraction` done after `elapsed_s` seconds, given the up-front estimate
    of its whole run (None when there was none); None when nothing honest can be said yet."""
    if fraction is None or elapsed_s is None or elapsed_s < 0:
        return None
    f = min(1.0, max(0.0, float(fraction)))
    if f >= 1.0:
        return 0.0
    # An estimate the job has already outlived was wrong: only what is observed counts then.
    has_estimate = estimate_s is not None and estimate_s > elapsed_s
    if f <= 0.0 or elapsed_s <= 0:
        return estimate_s - elapsed_s if has_estimate else None  # only the estimate can speak
    observed = elapsed_s * (1.0 - f) / f
    if not has_estimate:
        return observed if f >= MIN_OBSERVED_FRACTION and elapsed_s >= MIN_OBSERVED_S else None
    trust = min(1.0, f / OBSERVED_TRUSTED_AT)
    return trust * observed + (1.0 - trust) * estimate_s * (1.0 - f)


def format_remaining(seconds: float | None) -> str:
    """'about 4 min left', or '' when nothing can be said."""
    return "" if seconds is None or seconds <= 0 else f"{format_duration(seconds)} left"


def estimate_for_spec(spec: dict, history: list[dict] | None = None, device: str | None = None) -> TimeEstimate:
    """The up-front estimate of a sweep from its SweepSpec dict (a job's payload["spec"]), with the
    timings of earlier results on `device` when given."""
    if device is not None:
        history = [h for h in history or [] if same_device(h.get("device"), device)]
    recipes = [r for r in spec.get("recipes") or [] if isinstance(r, dict)]
    # The baseline (bf16, dense) is costed once by estimate_sweep whatever the count says.
    n = sum(1 for r in recipes if (r.get("precision"), r.get("sparsity", "none")) != ("bf16", "none"))
    return estimate_sweep(n, spec.get("data") or {}, spec.get("workload"), history, device, spec.get("tasks"))


SWEEP_JOB_FN = "engine.pipeline:run_sweep_job"


def job_estimate_s(job: dict, history: list[dict] | None = None, device: str | None = None) -> float | None:
    """The up-front estimate (seconds) of a queued or running job: language-model sweeps only (the
    estimator models their stages); None for anything else or a payload it cannot read."""
    spec = (job.get("payload") or {}).get("spec") if job.get("fn") == SWEEP_JOB_FN else None
    if not isinstance(spec, dict) or spec.get("kind", "causal_lm") != "causal_lm":
        return None
    try:
        return estimate_for_spec(spec, history, device).seconds
    except (TypeError, ValueError, AttributeError):  # a hand-made payload: say nothing rather than guess
        return None
