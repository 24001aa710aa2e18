"""The runtime interface (engine/runtimes/base.py) and registry (engine/runtimes/__init__.py)."""

import os
import subprocess
import sys

import pytest

from engine.errors import UnknownNameError
from engine.registry import BACKENDS
from engine.runtimes import available_runtimes, get_runtime
from engine.runtimes.base import (
    Availability,
    Measurement,
    Runtime,
    relative_spread,
    speedup,
    summarize_runs,
)


def _m(precision="bf16", tps=100.0, spread=0.02, batch=8, device="NVIDIA H100 80GB HBM3", backend="tensorrt_llm",
       metric="output_tokens_per_sec", repeats=3):
    return Measurement(backend=backend, precision=precision, sparsity="none", batch_size=batch, input_len=128,
                       output_len=64, metrics={metric: tps}, spread={metric: spread}, repeats=repeats,
                       provenance={"kind": "measured", "device": {"kind": "cuda", "name": device, "index": 0}})


def test_relative_spread_and_summary():
    assert relative_spread([100, 110, 90]) == pytest.approx(0.2)
    assert relative_spread([5.0]) is None  # one run says nothing about noise
    # From 4 runs on, the interquartile range: one stray run does not decide the spread.
    assert relative_spread([100, 100, 100, 100, 160]) == pytest.approx(0.0)
    assert relative_spread([90, 95, 100, 105, 110]) == pytest.approx(0.10)
    assert relative_spread([0.0, 0.0]) == 0.0 and relative_spread([0.0, 1.0, -1.0]) is None
    med, spr = summarize_runs([{"a": 1.0, "b": 2.0}, {"a": 3.0}, {"a": 2.0, "b": 4.0}])
    assert med == {"a": 2.0} and spr == {"a": pytest.approx(1.0)}  # b missing in one run: dropped


def test_speedup_ratio_for_rates_and_latencies():
    assert speedup(_m(tps=100), _m("fp8", tps=150)) == (pytest.approx(1.5), None)
    base = _m(tps=20.0, metric="tpot_ms")
    fast = _m("fp8", tps=10.0, metric="tpot_ms")
    assert speedup(base, fast, metric="tpot_ms") == (pytest.approx(2.0), None)  # lower is better


@pytest.mark.parametrize("candidate, words", [
    (_m("fp8", tps=150, spread=0.25), "varied by 25%"),
    (_m("fp8", tps=150, spread=None, repeats=1), "measured only 1 time"),
    (_m("fp8", tps=150, batch=1), "Different workloads"),
    (_m("fp8", tps=150, device="NVIDIA A100-SXM4-80GB"), "different devices"),
    (_m("fp8", tps=150, backend="torch"), "Different backends"),
    (_m("fp8", tps=150, metric="ttft_ms"), "no 'output_tokens_per_sec'"),
])
def test_speedup_refuses_with_a_reason(candidate, words):
    ratio, reason = speedup(_m(), candidate)
    assert ratio is None and words in reason


def test_measurement_round_trips_through_dict():
    m = _m()
    assert Measurement.from_dict(m.to_dict()) == m


def test_registry_names_and_did_you_mean():
    assert set(BACKENDS) >= {"torch", "tensorrt_llm"}
    assert isinstance(get_runtime("tensorrt_llm"), Runtime)
    with pytest.raises(UnknownNameError, match="tensorrt_llm"):
        get_runtime("tensorrt-llm")


def test_available_runtimes_says_why_not_here(monkeypatch):
    monkeypatch.delenv("TLAB_TRTLLM_BENCH", raising=False)
    monkeypatch.setattr("engine.runtimes.tensorrt_llm.availability.tensorrt_llm_installed", lambda: False)
    status = available_runtimes()
    assert isinstance(status["tensorrt_llm"], Availability)
    assert not status["tensorrt_llm"].ok
    assert "not installed" in status["tensorrt_llm"].reason and "pip install tensorrt_llm" in status["tensorrt_llm"].reason


def test_listing_runtimes_imports_nothing_heavy():
    code = ("import sys, engine.runtimes as r; r.available_runtimes(); "
            "print(sorted(m for m in ('torch','transformers','modelopt','tensorrt_llm') if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if k != "TLAB_TRTLLM_BENCH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    # the torch backend may import torch to probe CUDA; TensorRT-LLM must stay unimported
    assert "tensorrt_llm" not in out.stdout and "modelopt" not in out.stdout


# --- more rounds while the runs are too noisy for a speedup -----------------------------------------

def _scripted_rounds(values_per_model):
    """A run_rounds callable that hands out the given tokens/s values in order, recording its calls."""
    calls = []

    def run_rounds(n, first, done):
        calls.append((n, first, done))
        return [[{"output_tokens_per_sec": v} for v in vals[done:done + n]] for vals in values_per_model]
    return run_rounds, calls


def test_steady_runs_stop_after_the_first_rounds():
    from engine.runtimes.base import runs_until_steady

    rounds, calls = _scripted_rounds([[100, 101, 99, 100, 100, 100], [150, 151, 149, 150, 150, 150]])
    runs = runs_until_steady(rounds, repeats=4, max_repeats=12)
    assert calls == [(4, True, 0)] and [len(r) for r in runs] == [4, 4]


def test_a_noisy_burst_gets_more_rounds_until_the_spread_settles():
    from engine.runtimes.base import relative_spread, runs_until_steady

    noisy = [100, 60, 140, 100, 100, 101, 99, 100, 100, 100, 100, 100]
    rounds, calls = _scripted_rounds([noisy, [150] * 12])
    more = []
    runs = runs_until_steady(rounds, repeats=4, max_repeats=12, on_more=lambda w, n: more.append((w, n)))
    assert calls == [(4, True, 0), (4, False, 4)]  # warm-up only in the first call
    assert len(runs[0]) == 8 and relative_spread([r["output_tokens_per_sec"] for r in runs[0]]) <= 0.10
    assert more and more[0][0] > 0.10 and more[0][1] == 4


def test_a_machine_that_never_settles_stops_at_the_cap_with_its_spread_intact():
    from engine.runtimes.base import relative_spread, runs_until_steady

    wild = [100, 50, 150, 70, 130, 60, 140, 80, 120, 55]
    rounds, calls = _scripted_rounds([wild, [150] * 10])
    runs = runs_until_steady(rounds, repeats=4, max_repeats=10)
    assert [c[0] for c in calls] == [4, 4, 2] and len(runs[0]) == 10
    assert relative_spread([r["output_tokens_per_sec"] for r in runs[0]]) > 0.10  # still refused later


def test_noisy_runs_on_several_threads_are_measured_again_on_one():
    from engine.runtimes.base import steady_or_one_thread

    threads = {"n": 2}
    calls = []

    def measure():  # timings stall with 2 threads while another program holds a core
        calls.append(threads["n"])
        vals = [100, 55, 150, 80] if threads["n"] > 1 else [60, 61, 59, 60]
        return [[{"output_tokens_per_sec": v} for v in vals]]

    runs, note = steady_or_one_thread(measure, 2, lambda n: threads.update(n=n))
    assert calls == [2, 1] and [r["output_tokens_per_sec"] for r in runs[0]] == [60, 61, 59, 60]
    assert note.startswith("measured on 1 thread") and "2 threads" in note


def test_the_spread_that_decides_can_be_a_latency():
    """The diffusion speed stage times step latency, not tokens/s: its noisy runs fall back to 1 thread too."""
    from engine.runtimes.base import steady_or_one_thread

    threads = {"n": 2}

    def measure():
        vals = [30, 45, 26, 40] if threads["n"] > 1 else [34, 35, 34, 34]
        return [[{"step_latency_ms": v, "latency_ms": 20 * v} for v in vals]]

    runs, note = steady_or_one_thread(measure, 2, lambda n: threads.update(n=n), metric="step_latency_ms")
    assert threads["n"] == 1 and [r["step_latency_ms"] for r in runs[0]] == [34, 35, 34, 34] and note


def test_steady_runs_or_a_single_thread_keep_their_first_measurement():
    from engine.runtimes.base import steady_or_one_thread

    steady = lambda: [[{"output_tokens_per_sec": v} for v in (100, 101, 99, 100)]]  # noqa: E731
    noisy = lambda: [[{"output_tokens_per_sec": v} for v in (100, 50, 150, 70)]]  # noqa: E731
    never = lambda n: pytest.fail("must not change threads")  # noqa: E731
    assert steady_or_one_thread(steady, 2, never)[1] is None
    runs, note = steady_or_one_thread(noisy, 1, never)  # already one thread: the refusal stands
    assert note is None and len(runs[0]) == 4
