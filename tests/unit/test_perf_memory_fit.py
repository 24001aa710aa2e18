"""Memory fit as TensorRT-LLM decides it: no published run that states a batch may be called "does not fit"."""

import pandas as pd
import pytest

from engine.perf import arch, catalog, memory
from engine.perf.estimate import Query, estimate, resolve
from engine.perf.formats import kv_bytes
from engine.reference import published_frame


def published_runs() -> pd.DataFrame:
    """Every published row (any metric) that states model, GPU, TP, batch, ISL and precision."""
    d = published_frame()
    d = d[d.batch.notna() & d.model_id.notna() & d.gpu_id.notna() & d.tp.notna() & d.isl.notna()
          & d.precision.notna()]
    return d.assign(osl=d.osl.fillna(1).astype(int), static=d.engine_version.str.contains("static"))


def test_the_check_covers_the_published_runs():
    runs = published_runs()
    assert len(runs) >= 200 and runs.static.any() and (~runs.static).any()


def test_no_published_run_is_called_does_not_fit():
    bad = []
    for r in published_runs().itertuples():
        sparsity = None if r.sparsity == "none" else r.sparsity
        res = resolve(Query(r.model_id, r.gpu_id, r.precision, int(r.batch), int(r.isl), int(r.osl), int(r.tp),
                            sparsity))
        if r.static:  # gptSessionBenchmark: one contiguous KV buffer for the whole static batch
            s = res.shape
            ok = memory.plan(s.arch, s.gpu, s.precision, s.sparse, s.tp, s.batch, s.isl, s.osl, s.kv_bytes,
                             paged=False).fits
        else:  # in-flight batching runs whenever one sequence fits (the rest wait for a slot)
            ok = res.max_batch >= 1
        if not ok:
            bad.append(f"{r.model} {r.precision} {r.gpu_id} TP{r.tp} batch {r.batch} {r.isl}/{r.osl}")
    assert not bad, bad


def test_paged_pool_takes_the_documented_fraction_and_whole_blocks():
    a, g = arch.resolve("meta-llama/Llama-3.1-8B"), catalog.gpu("h100-sxm")
    paged = memory.plan(a, g, "fp8", False, 1, 4, 100, 1, 1.0)
    flat = memory.plan(a, g, "fp8", False, 1, 4, 100, 1, 1.0, paged=False)
    assert paged.kv_cache == pytest.approx(flat.kv_cache * 128 / 101)  # 101 tokens -> 4 blocks of 32
    free = g.memory_bytes - paged.weights - paged.activations - memory.RESERVE_FIXED
    assert paged.reserve - memory.RESERVE_FIXED == pytest.approx(0.10 * free)
    assert flat.reserve == memory.RESERVE_FIXED


def test_more_requests_than_the_pool_holds_run_at_the_resident_batch():
    # Llama 2 7B FP8 at ISL 128 / OSL 2048 on one 48 GB L40S: batch 64 runs under in-flight batching
    from engine.perf import calibrate

    cal = calibrate.Calibration(calibrate.prior_params())  # priors: the memory logic is what is tested
    e = estimate(Query("meta-llama/Llama-2-7b-hf", "l40s", "fp8", 4096, 128, 2048), cal)
    assert e.fits_in_memory and e.output_tokens_per_sec > 0 and e.batch == 4096
    assert 1 <= e.max_batch_that_fits < 4096 and f"holds {e.max_batch_that_fits} of the 4096" in e.message
    small = estimate(Query("meta-llama/Llama-2-7b-hf", "l40s", "fp8", e.max_batch_that_fits, 128, 2048), cal)
    assert e.output_tokens_per_sec == pytest.approx(small.output_tokens_per_sec)
    assert kv_bytes("fp8", "auto", True) == 1  # FP8 checkpoints get an FP8 KV cache, as trtllm-bench picks
