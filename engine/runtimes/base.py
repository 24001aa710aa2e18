"""The one interface every runtime backend implements, plus the pure helpers around it.

A runtime deploys a calibrated model, runs a fixed workload and returns one `Measurement` per
batch size. It first says, in plain words, whether it can run here at all (`availability`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from abc import ABC, abstractmethod
from typing import Any

from engine.store.entities import Measurement

# Metrics where a smaller number is better; every other metric is a rate (bigger is better).
LOWER_IS_BETTER = frozenset({
    "prefill_ms", "ttft_ms", "tpot_ms", "request_latency_ms", "latency_ms", "step_latency_ms",
    "request_latency_p50_ms", "request_latency_p90_ms", "request_latency_p99_ms", "peak_memory_mb",
})

DEFAULT_MAX_SPREAD = 0.10

Progress = Callable[[float, str], None]  # (fraction done 0..1, message), as engine.quantize


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""  # plain words when not ok: what is missing and how to get it

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class Capabilities:
    """What a backend does, declared (never probed with hasattr)."""

    device_kinds: tuple[str, ...]  # "cpu", "cuda"
    interleaved: bool  # compare() runs recipes round by round on one device, so drift hits all alike
    in_process: bool  # deploy() gives a model run in this process (else an export run by another program)


class Runtime(ABC):
    """A runtime backend: deploy a calibrated model, measure a workload, compare recipes.

    Progress everywhere is `progress(fraction 0..1, message)`. Errors are engine.errors.TlabError
    subclasses whose message says what to do.
    """

    name: str  # registry key, e.g. "torch", "tensorrt_llm"
    label: str  # shown to people, e.g. "TensorRT-LLM"
    capabilities: Capabilities

    @abstractmethod
    def availability(self, precision: str = "bf16", sparsity: str = "none") -> Availability:
        """Whether this backend can run that recipe on this machine; if not, why."""

    @abstractmethod
    def deploy(self, calibrated: Any, recipe: Any) -> Any:
        """What `measure` takes for `recipe` (engine.spec.Recipe), made from the calibrated model:
        a model on real low-precision kernels, or the calibrated model itself for a backend that
        exports it when it measures. Called once per recipe, while the calibrated model is alive."""

    @abstractmethod
    def measure(self, deployed: Any, recipe: Any, workload: Any,
                progress: Progress | None = None) -> list[Measurement]:
        """Run `workload` (engine.spec.Workload) for `recipe` on `deployed` (from `deploy`, or what
        each backend documents) and return one Measurement per batch size."""

    def compare(self, entries: Sequence[tuple[Any, Any]], workload: Any,
                progress: Progress | None = None) -> list[list[Measurement]]:
        """Measure several (deployed, recipe) pairs on one device with one workload; one list of
        Measurements per entry. This default measures them one after the other."""
        progress = progress or (lambda f, s: None)
        out = []
        for i, (deployed, recipe) in enumerate(entries):
            share = 1 / len(entries)
            out.append(self.measure(deployed, recipe, workload,
                                    lambda f, s, i=i: progress((i + max(0.0, min(1.0, f))) * share, s)))
        return out


def relative_spread(values: Sequence[float]) -> float | None:
    """Run-to-run spread relative to the median: the interquartile range / median from 4 runs on
    (one stray run on a shared machine does not decide it), (max - min) / median for 2-3 runs.
    None when it cannot be known (a single run, or a zero median), so no JSON holds NaN or Infinity."""
    vals = [float(v) for v in values]
    if len(vals) < 2:
        return None
    med = statistics.median(vals)
    if len(vals) >= 4:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
        width = q3 - q1
    else:
        width = max(vals) - min(vals)
    if med == 0:
        return 0.0 if width == 0 else None
    return width / abs(med)


def summarize_runs(runs: Sequence[dict[str, float]]) -> tuple[dict[str, float], dict[str, float | None]]:
    """Medians and relative spreads per metric over repeated runs (metrics missing in any run are dropped)."""
    if not runs:
        return {}, {}
    keys = [k for k in runs[0] if all(k in r and r[k] is not None for r in runs)]
    medians = {k: float(statistics.median(float(r[k]) for r in runs)) for k in keys}
    spreads = {k: relative_spread([r[k] for r in runs]) for k in keys}
    return medians, spreads


def speed_metric_of(metrics: dict[str, Any]) -> str:
    """The metric a speedup is taken on: total output tokens/s when measured, else decode tokens/s."""
    return "output_tokens_per_sec" if "output_tokens_per_sec" in metrics else "decode_tokens_per_sec"


def worst_spread(runs_per_model: Sequence[Sequence[dict[str, float]]], metric: str) -> float | None:
    """The largest relative spread of `metric` over the models' runs (None when none is known)."""
    spreads = [relative_spread([r[metric] for r in runs]) for runs in runs_per_model
               if runs and all(metric in r for r in runs)]
    known = [s for s in spreads if s is not None]
    return max(known) if known else None


RunRounds = Callable[[int, bool, int], list[list[dict[str, float]]]]  # (rounds, first call, runs done)


def runs_until_steady(run_rounds: RunRounds, repeats: int, max_repeats: int,
                      max_spread: float = DEFAULT_MAX_SPREAD,
                      on_more: Callable[[float, int], None] | None = None,
                      metric: str | None = None) -> list[list[dict[str, float]]]:
    """`repeats` interleaved rounds from `run_rounds`, then more while any model's spread on the
    speed metric is over `max_spread`, up to `max_repeats` rounds in all (a burst of load from other
    programs usually passes, as pyperf and timeit assume). The spread is never trimmed: a machine
    that stays noisy still gets its speedup refused, with the reason. One list of runs per model.
    `metric`: the one whose spread decides (default: the token rate a speedup is taken on)."""
    runs: list[list[dict[str, float]]] = []
    while True:
        done = len(runs[0]) if runs else 0
        more = run_rounds(min(repeats, max_repeats - done), not runs, done)
        runs = [a + b for a, b in zip(runs, more)] if runs else [list(r) for r in more]
        worst = worst_spread(runs, metric or speed_metric_of(runs[0][0]))
        if worst is None or worst <= max_spread or len(runs[0]) >= max_repeats:
            return runs
        if on_more:
            on_more(worst, min(repeats, max_repeats - len(runs[0])))


def steady_or_one_thread(measure: Callable[[], list[list[dict[str, float]]]], threads: int,
                         set_threads: Callable[[int], None], max_spread: float = DEFAULT_MAX_SPREAD,
                         on_retry: Callable[[float], None] | None = None,
                         metric: str | None = None) -> tuple[list[list[dict[str, float]]], str | None]:
    """`measure()`; if its runs stay too noisy with several CPU threads, measure again on one.

    Threads that synchronise at every op stall whenever another program holds a core, so on a busy
    machine one thread gives steady timings where two give 45% spread (seen on 2 cores). Returns
    the runs and, when it fell back, a note for the provenance; the new runs replace the noisy ones.
    `metric`: the one whose spread decides (default: the token rate a speedup is taken on).
    """
    runs = measure()
    worst = worst_spread(runs, metric or speed_metric_of(runs[0][0]))
    if threads <= 1 or worst is None or worst <= max_spread:
        return runs, None
    if on_retry:
        on_retry(worst)
    set_threads(1)
    return measure(), (f"measured on 1 thread: with {threads} threads the runs varied by {worst:.0%} "
                       "(other programs were using the cores)")


def _same_device(a: dict[str, Any], b: dict[str, Any]) -> bool:
    da, db = a.get("device"), b.get("device")
    if isinstance(da, dict) and isinstance(db, dict):
        return da.get("name") == db.get("name") and da.get("index", 0) == db.get("index", 0)
    return da == db


def speedup(baseline: Measurement, candidate: Measurement, metric: str = "output_tokens_per_sec",
            max_spread: float = DEFAULT_MAX_SPREAD) -> tuple[float | None, str | None]:
    """How many times faster `candidate` is than `baseline` on `metric`: (ratio, None), or
    (None, reason) when the two are not comparable or either side is too noisy to trust."""
    for side, m in (("baseline", baseline), ("candidate", candidate)):
        if metric not in m.metrics or m.metrics[metric] is None:
            return None, f"The {side} ({m.precision}) has no '{metric}' measurement."
        s = m.spread.get(metric)
        if s is None or math.isnan(s):  # NaN: from stores that wrote one
            return None, (f"The {side} ({m.precision}) was measured only {m.repeats} time(s), so its "
                          f"run-to-run spread is unknown; repeat it at least twice.")
        if s > max_spread:
            return None, (f"The {side} ({m.precision}) varied by {s:.0%} between runs on '{metric}' "
                          f"(limit {max_spread:.0%}); the speedup would be noise. Close other GPU/CPU "
                          f"work, add warm-up or repeats, and run again.")
    wl_b = (baseline.batch_size, baseline.input_len, baseline.output_len)
    wl_c = (candidate.batch_size, candidate.input_len, candidate.output_len)
    if wl_b != wl_c:
        return None, (f"Different workloads (batch, input, output) {wl_b} vs {wl_c}; "
                      "benchmark both with the same workload.")
    if baseline.backend != candidate.backend:
        return None, f"Different backends ({baseline.backend} vs {candidate.backend}); compare within one."
    if not _same_device(baseline.provenance, candidate.provenance):
        return None, "Measured on different devices; benchmark both on the same device in one run."
    b, c = float(baseline.metrics[metric]), float(candidate.metrics[metric])
    if b <= 0 or c <= 0:
        return None, f"'{metric}' is not positive on one side ({b} vs {c}); nothing to compare."
    return (b / c if metric in LOWER_IS_BETTER else c / b), None

