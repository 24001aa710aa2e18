"""The one interface every runtime backend implements, plus the pure helpers around it.

A runtime deploys a calibrated model, runs a fixed workload and returns one `Measurement` per
batch size. It first says, in plain words, whether it can run here at all (`availability`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

# Metrics where a smaller number is better; every other metric is a rate (bigger is better).
LOWER_IS_BETTER = frozenset({
    "prefill_ms", "ttft_ms", "tpot_ms", "request_latency_ms", "latency_ms",
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


@dataclass
class Measurement:
    """One benchmarked (recipe, batch size) point.

    `metrics` holds whichever of these the backend measures: output_tokens_per_sec,
    output_tokens_per_sec_per_gpu, output_tokens_per_sec_per_user, requests_per_sec,
    decode_tokens_per_sec, prefill_ms, ttft_ms, tpot_ms, request_latency_ms, peak_memory_mb.
    Each is the median over `repeats` runs; `spread` is the relative spread of those runs per
    metric (see `relative_spread`). `provenance` is
    {"kind": "measured", "device": {...}, "backend": ..., "versions": {...},
     "command": ... (optional), "workload": {...}}.
    """

    backend: str
    precision: str
    sparsity: str
    batch_size: int
    input_len: int
    output_len: int
    metrics: dict[str, float]
    spread: dict[str, float | None]  # None: unknown (measured once)
    repeats: int
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        return cls(**d)


@runtime_checkable
class Runtime(Protocol):
    name: str  # registry key, e.g. "torch", "tensorrt_llm"
    label: str  # shown to people, e.g. "TensorRT-LLM"

    def availability(self, precision: str = "bf16", sparsity: str = "none") -> Availability:
        """Whether this backend can run that recipe on this machine; if not, why."""
        ...

    def benchmark(self, model: Any, recipe: Any, workload: Any,
                  progress: Progress | None = None) -> list[Measurement]:
        """Run `workload` (engine.spec.Workload) for `recipe` (engine.spec.Recipe) on `model`
        (a loaded, calibrated model handle or an export directory; each backend documents which)
        and return one Measurement per batch size. Raises engine.errors.TlabError subclasses."""
        ...


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
                      on_more: Callable[[float, int], None] | None = None) -> list[list[dict[str, float]]]:
    """`repeats` interleaved rounds from `run_rounds`, then more while any model's spread on the
    speed metric is over `max_spread`, up to `max_repeats` rounds in all (a burst of load from other
    programs usually passes, as pyperf and timeit assume). The spread is never trimmed: a machine
    that stays noisy still gets its speedup refused, with the reason. One list of runs per model."""
    runs: list[list[dict[str, float]]] = []
    while True:
        done = len(runs[0]) if runs else 0
        more = run_rounds(min(repeats, max_repeats - done), not runs, done)
        runs = [a + b for a, b in zip(runs, more)] if runs else [list(r) for r in more]
        worst = worst_spread(runs, speed_metric_of(runs[0][0]))
        if worst is None or worst <= max_spread or len(runs[0]) >= max_repeats:
            return runs
        if on_more:
            on_more(worst, min(repeats, max_repeats - len(runs[0])))


def steady_or_one_thread(measure: Callable[[], list[list[dict[str, float]]]], threads: int,
                         set_threads: Callable[[int], None], max_spread: float = DEFAULT_MAX_SPREAD,
                         on_retry: Callable[[float], None] | None = None) -> tuple[list[list[dict[str, float]]], str | None]:
    """`measure()`; if its runs stay too noisy with several CPU threads, measure again on one.

    Threads that synchronise at every op stall whenever another program holds a core, so on a busy
    machine one thread gives steady timings where two give 45% spread (seen on 2 cores). Returns
    the runs and, when it fell back, a note for the provenance; the new runs replace the noisy ones.
    """
    runs = measure()
    worst = worst_spread(runs, speed_metric_of(runs[0][0]))
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


# --- device probe ---------------------------------------------------------------------------

def probe_nvidia_gpu(index: int = 0) -> dict[str, Any] | None:
    """Name, memory, compute capability, generation, driver and clocks of NVIDIA GPU `index`, or
    None when there is none. Asks nvidia-smi first (no heavy import); torch.cuda fills what it lacks."""
    info = _nvidia_smi(index)
    if info is None or not info.get("compute_capability"):
        from_torch = _torch_cuda(index)
        if from_torch is None and info is None:
            return None
        info = {**(from_torch or {}), **{k: v for k, v in (info or {}).items() if v is not None}}
    info = {k: v for k, v in info.items() if v is not None}
    info["index"] = index
    cc = info.get("compute_capability")
    if cc:
        from engine.registry import generation_of

        info["generation"] = generation_of(tuple(cc))
    return info


def _torch_cuda(index: int) -> dict[str, Any] | None:
    try:
        import torch

        if not (torch.cuda.is_available() and torch.cuda.device_count() > index):
            return None
        props = torch.cuda.get_device_properties(index)
        return {"name": props.name, "memory_mb": int(props.total_memory // (1024 * 1024)),
                "compute_capability": [props.major, props.minor], "cuda": torch.version.cuda}
    except Exception:  # noqa: BLE001 - a broken CUDA install must read as "no GPU", not crash the app
        return None


_SMI_FIELDS = ("name", "memory.total", "driver_version", "compute_cap",
               "clocks.sm", "clocks.mem", "clocks.max.sm")


def _nvidia_smi(index: int) -> dict[str, Any] | None:
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, f"--id={index}", f"--query-gpu={','.join(_SMI_FIELDS)}",
                              "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return parse_nvidia_smi_csv(out.stdout.strip().splitlines()[0])


def parse_nvidia_smi_csv(line: str) -> dict[str, Any]:
    """One `--query-gpu=name,memory.total,driver_version,compute_cap,clocks.sm,clocks.mem,
    clocks.max.sm --format=csv,noheader,nounits` line -> dict (unreadable fields are None)."""
    parts = [p.strip() for p in line.split(",")]
    parts += [""] * (len(_SMI_FIELDS) - len(parts))

    def num(s: str) -> int | None:
        try:
            return int(float(s))
        except ValueError:
            return None  # "[N/A]" or "[Not Supported]"

    cc = None
    if "." in parts[3]:
        try:
            cc = [int(x) for x in parts[3].split(".")[:2]]
        except ValueError:
            cc = None
    return {"name": parts[0] or None, "memory_mb": num(parts[1]), "driver": parts[2] or None,
            "compute_capability": cc, "sm_clock_mhz": num(parts[4]), "mem_clock_mhz": num(parts[5]),
            "max_sm_clock_mhz": num(parts[6])}


def device_summary(gpu: dict[str, Any] | None) -> dict[str, Any]:
    """The `device` entry of a provenance dict."""
    if gpu is None:
        import platform

        return {"kind": "cpu", "name": platform.processor() or platform.machine()}
    return {"kind": "cuda", **gpu}
