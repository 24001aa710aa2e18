"""The estimator: contract fields, physics the decision depends on, bad input, memory plan."""

import pytest

from engine.errors import TlabError, UnknownNameError, UnsupportedOnDevice
from engine.perf import calibrate, memory
from engine.perf.estimate import BadQuery, Query, estimate

L8, L70 = "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-70B"


@pytest.fixture(scope="module")
def cal():
    return calibrate.default_calibration(include_store=False)  # fitted once per process, then memoized


def est(cal, model=L8, gpu="h200", precision="bf16", batch=1, isl=2048, osl=128, tp=1, **kw):
    return estimate(Query(model, gpu, precision, batch, isl, osl, tp, **kw), cal)


def test_contract_fields_and_provenance(cal):
    e = est(cal).to_dict()
    for key in ("output_tokens_per_sec", "output_tokens_per_sec_per_gpu", "ttft_ms", "tpot_ms",
                "fits_in_memory", "weights_gib", "max_batch_that_fits", "provenance"):
        assert key in e
    assert e["provenance"] == "estimated" and e["fits_in_memory"]
    assert e["output_tokens_per_sec_low"] < e["output_tokens_per_sec"] < e["output_tokens_per_sec_high"]
    assert "measured points on h200" in e["calibrated_from"]
    # request latency = prefill + (osl - 1) decode steps; throughput = batch * osl / latency
    assert e["request_latency_ms"] == pytest.approx(e["ttft_ms"] + 127 * e["tpot_ms"], rel=1e-3)
    assert e["output_tokens_per_sec"] == pytest.approx(128 / e["request_latency_ms"] * 1e3, rel=1e-3)


def test_spec_sheet_only_gpu_says_so_with_a_wider_band(cal):
    on_h200, on_l40s = est(cal, gpu="h200"), est(cal, gpu="l40s")
    assert on_l40s.calibrated_from.startswith("spec sheet only")
    assert on_l40s.uncertainty_rel > on_h200.uncertainty_rel


def test_weight_only_int4_wins_small_batches_and_loses_large_ones(cal):
    # NVIDIA's own H200 measurements: INT4 AWQ 1.33x BF16 at batch 1, 0.83x at batch 64
    small = est(cal, precision="int4_awq", batch=1).output_tokens_per_sec / est(cal, batch=1).output_tokens_per_sec
    large = est(cal, precision="int4_awq", batch=64).output_tokens_per_sec / est(cal, batch=64).output_tokens_per_sec
    assert small > 1.1 and large < 1.0
    assert est(cal, precision="fp8", batch=64).output_tokens_per_sec > est(cal, precision="int4_awq",
                                                                            batch=64).output_tokens_per_sec


def test_more_bandwidth_is_faster_when_memory_bound(cal):
    assert est(cal, gpu="h200").output_tokens_per_sec > est(cal, gpu="h100-sxm").output_tokens_per_sec


def test_tensor_parallel_splits_weights_and_pays_all_reduce(cal):
    tp1, tp2 = est(cal, model=L70, precision="fp8"), est(cal, model=L70, precision="fp8", tp=2)
    assert tp2.weights_gib == pytest.approx(tp1.weights_gib / 2, rel=1e-6)
    assert tp2.output_tokens_per_sec > tp1.output_tokens_per_sec  # faster in total...
    assert tp2.output_tokens_per_sec_per_gpu < tp1.output_tokens_per_sec_per_gpu  # ...less per GPU
    assert tp2.breakdown_s["decode_comm_s"] > 0 == tp1.breakdown_s["decode_comm_s"]


def test_sparsity_shrinks_weights_and_speeds_decode(cal):
    dense, sparse = est(cal, precision="fp8", batch=8), est(cal, precision="fp8", batch=8, sparsity="2:4")
    assert sparse.sparsity == "2:4" and sparse.weights_gib < 0.75 * dense.weights_gib
    assert sparse.tpot_ms < dense.tpot_ms
    with pytest.raises(TlabError, match="4-bit"):
        est(cal, precision="int4_awq", sparsity="2:4")


def test_moe_decode_reads_only_touched_experts(cal):
    one = est(cal, model="mistralai/Mixtral-8x7B-v0.1", gpu="h200", precision="fp8", batch=1, isl=128, osl=128)
    assert one.fits_in_memory
    # batch 1 touches 2 of 8 experts: far faster than streaming all 46.7B weights each step
    all_weights_s = 46.7e9 / 4.8e12
    assert one.tpot_ms / 1e3 < all_weights_s


def test_batch_max_is_the_largest_batch_that_fits(cal):
    e = est(cal, batch="max")
    assert 64 < e.batch <= e.max_batch_that_fits and e.fits_in_memory
    # one more request than the KV pool holds still runs (in-flight batching queues it): not "does not fit"
    too_big = est(cal, batch=e.max_batch_that_fits + 1)
    assert too_big.fits_in_memory and too_big.batch == e.max_batch_that_fits + 1
    assert f"holds {e.max_batch_that_fits} of the {too_big.batch} sequences" in too_big.message
    resident = est(cal, batch=e.max_batch_that_fits)
    assert too_big.output_tokens_per_sec == pytest.approx(resident.output_tokens_per_sec)


def test_model_that_does_not_fit_names_the_smallest_tp(cal):
    e = est(cal, model=L70, gpu="l4", precision="bf16", isl=128, osl=128)
    assert not e.fits_in_memory and e.max_batch_that_fits == 0
    assert e.smallest_tp_that_fits == 8 and "smallest TP that fits is 8" in e.message


@pytest.mark.parametrize("kw, err, match", [
    (dict(gpu="a100-sxm-80gb", precision="fp8"), UnsupportedOnDevice, "Ampere"),
    (dict(gpu="h100-sxm", precision="nvfp4"), UnsupportedOnDevice, "Blackwell"),
    (dict(gpu="b200", precision="w4a8_awq"), UnsupportedOnDevice, "no W4A8"),
    (dict(gpu="h100sxm"), UnknownNameError, "h100-sxm"),
    (dict(precision="int4"), UnknownNameError, "int4_awq"),
    (dict(batch=0), BadQuery, "batch"), (dict(batch=-3), BadQuery, "batch"), (dict(batch=1.5), BadQuery, "batch"),
    (dict(isl=0), BadQuery, "isl"), (dict(osl="x"), BadQuery, "osl"),
    (dict(tp=3), BadQuery, "tp 3"),
])
@pytest.mark.bad_input
def test_bad_input_says_what_to_do(cal, kw, err, match):
    with pytest.raises(err, match=match):
        est(cal, **kw)


def test_context_beyond_the_trained_length_is_estimated_with_a_warning(cal):
    # TensorRT-LLM publishes ISL 2048 + OSL 128 runs of 2,048-context models: estimate them, warn in message
    e = est(cal, model="meta-llama/Llama-2-7b-hf", isl=4000, osl=200, batch=1)
    assert e.fits_in_memory and e.output_tokens_per_sec > 0
    assert "trained context of 4096" in e.message and "4200" in e.message
    assert est(cal, model="meta-llama/Llama-2-7b-hf", isl=2000, osl=200, batch=1).message == ""


@pytest.mark.bad_input
def test_only_memory_refuses_a_long_context(cal):
    # far past the context and past memory: estimated as not fitting, with both reasons in the message
    e = est(cal, model="meta-llama/Llama-2-7b-hf", gpu="l4", precision="bf16", isl=2_000_000, osl=100, batch=1)
    assert not e.fits_in_memory and e.output_tokens_per_sec is None
    assert "does not fit" in e.message and "trained context" in e.message


def test_memory_plan_adds_up_and_grows_with_batch():
    from engine.perf import arch, catalog

    a, g = arch.resolve(L8), catalog.gpu("h100-sxm")
    p1 = memory.plan(a, g, "bf16", False, 1, 1, 2048, 128, 2.0)
    p8 = memory.plan(a, g, "bf16", False, 1, 8, 2048, 128, 2.0)
    assert p1.total == pytest.approx(p1.weights + p1.kv_cache + p1.activations + p1.reserve)
    assert p8.kv_cache == pytest.approx(8 * p1.kv_cache)
    # Llama 3.1 8B KV: 32 layers x 8 KV heads x 128 x (K, V) x 2 bytes = 128 KiB per token
    assert p1.kv_cache == pytest.approx(2176 * 32 * 8 * 128 * 2 * 2)
    assert memory.plan(a, g, "int4_awq", False, 1, 1, 2048, 128, 2.0).weights < 0.4 * p1.weights


def test_kv_cache_pool_is_trtllm_fraction_of_free_memory():
    # trtllm-bench sizes the KV pool as kv_cache_free_gpu_mem_fraction (0.9) of the memory left after
    # weights, activations and workspaces: the largest batch is where that bound binds.
    from engine.perf import arch, catalog

    a, g = arch.resolve(L70), catalog.gpu("h100-sxm")
    mb = memory.max_batch(a, g, "fp8", False, 1, 128, 128, 1.0)

    def free(p):
        return p.capacity - p.weights - p.activations - memory.RESERVE_FIXED

    at, over = (memory.plan(a, g, "fp8", False, 1, b, 128, 128, 1.0) for b in (mb, mb + 1))
    assert at.fits and at.kv_cache <= memory.KV_CACHE_FREE_FRACTION * free(at)
    assert not over.fits and over.kv_cache > memory.KV_CACHE_FREE_FRACTION * free(over)
    # 70B FP8 on one H100 at 128/128 ran at 3378 output tok/s in TensorRT-LLM 0.17 (perf-overview):
    # far more than the ~90 sequences a 5%-of-capacity reserve on a decimal-GB capacity left room for.
    assert mb > 150


def test_capacity_is_binary_gib_less_ecc_on_gddr():
    from engine.perf import catalog

    assert catalog.gpu("h100-sxm").memory_bytes / catalog.GIB == pytest.approx(80)  # nvidia-smi 81559 MiB
    assert catalog.gpu("l4").memory_bytes / catalog.GIB == pytest.approx(22.5)  # 24 GiB GDDR6, ECC on


def test_large_batches_keep_tensor_parallel_gemms_efficient(cal):
    # Compute efficiency follows a GEMM's work (rows x weights): split 8 ways at batch 2048 a 70B GEMM
    # still has thousands of tiles, so TP8 decode GEMM time is close to 1/8 of TP1's (a per-weights
    # saturation made it ~3x slower and the max-throughput rows 40% under at TP8).
    import dataclasses

    from engine.perf.estimate import Query, resolve
    from engine.perf.model import Items, work_items

    s1 = resolve(Query(L70, "h200", "fp8", 2048, 128, 128, 1)).shape
    s8 = dataclasses.replace(s1, tp=8)
    t = {}
    for s in (s1, s8):
        items = Items([work_items(s)])
        sec = items.seconds(cal.params)
        t[s.tp] = sec[items.decode & (items.kind == "gemm")].sum()
    assert 8 * t[8] < 1.3 * t[1]


def test_activation_passes_do_not_shrink_with_tensor_parallelism(cal):
    # Norms, residual adds and MoE token permutation run on the full hidden vector on every TP rank:
    # their bytes stay put as TP grows while GEMM weights shrink 1/TP. Without them the max-throughput
    # rows were over-estimated more the higher the TP (Mixtral FP8 TP8 by ~50%).
    import dataclasses

    from engine.perf import arch as arch_mod
    from engine.perf.estimate import Query, resolve
    from engine.perf.model import ACT_PASSES_DENSE, act_passes, work_items

    mix = "mistralai/Mixtral-8x7B-v0.1"
    a = arch_mod.resolve(mix)
    assert act_passes(a) == ACT_PASSES_DENSE + 2 * (1 + 2) > act_passes(arch_mod.resolve(L8))
    s2 = resolve(Query(mix, "h100-sxm", "fp8", 512, 128, 128, 2)).shape
    by_tp = {}
    for tp in (2, 8):
        its = work_items(dataclasses.replace(s2, tp=tp))
        act = [it for it in its if it["kind"] == "act" and it["phase"] == "decode"]
        gemm = [it for it in its if it["kind"] == "gemm" and it["phase"] == "decode"]
        assert len(act) == 1 and act[0]["mult"] == 127 * a.layers
        assert act[0]["bytes"] == 512 * a.hidden * 2 * act_passes(a)
        by_tp[tp] = (act[0]["bytes"], gemm[0]["bytes"])
    assert by_tp[8][0] == by_tp[2][0] and by_tp[8][1] == pytest.approx(by_tp[2][1] / 4)
    # so in the estimate their share of a decode step grows with TP
    share = {}
    for tp in (2, 8):
        b = est(cal, model=mix, gpu="h100-sxm", precision="fp8", batch=512, isl=128, osl=128, tp=tp).breakdown_s
        share[tp] = b["decode_act_s"] / sum(v for k, v in b.items() if k.startswith("decode_"))
    assert 0 < share[2] < share[8]


def test_plain_roofline_has_no_activation_passes():
    # the peer-tool baseline in benchmarks/estimator_accuracy.py stays a bare roofline
    from engine.perf.estimate import Query, resolve
    from engine.perf.model import Items, work_items

    items = Items([work_items(resolve(Query(L8, "h200", "bf16", 64, 128, 128, 1)).shape)])
    sec = items.seconds(calibrate.PLAIN_ROOFLINE)
    assert sec[items.kind == "act"].sum() < 1e-6 * sec.sum()
