"""Terms of the roofline that issue #13's held-out protocols kept: each test pins what the term does to a
work item's time, without a fit (benchmarks/estimator_accuracy.py shows what it does to held-out error)."""

import dataclasses

import numpy as np
import pytest

from engine.perf import calibrate, catalog
from engine.perf.estimate import Query, resolve
from engine.perf.model import Items, work_items
from engine.perf.params import PRIORS, harness_param, prior_params

L7, L70 = "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-70b-hf"


def _seconds(shape, params, kind, phase="prefill"):
    items = Items([work_items(shape)])
    sec = items.seconds(params)
    return sec[(items.kind == kind) & (items.decode == (phase == "decode"))].sum()


def test_static_harness_adjustment_is_one_per_role_across_formats():
    # A100's FP16 rows are the only static-harness FP16 points: held out, a per-format adjustment had
    # nothing to learn from. One per role carries what FP8 static rows teach over to FP16.
    assert harness_param("c_w16") == harness_param("c_fp8") == harness_param("c_int4_awq") == "hs_c"
    assert harness_param("m_w16") == harness_param("m_fp8") == "hs_m"
    assert harness_param("w0_bf16") == harness_param("w0_8bit") == "hs_w0"
    assert harness_param("layer_us") == "hs_layer_us"
    assert not any(k in PRIORS for k in ("hs_c_w16", "hs_c_fp8", "hs_m_w16", "hs_link_eff"))


def test_static_adjustment_speeds_fp16_gemms_only_on_the_static_harness():
    shape = resolve(Query(L7, "a100-sxm-80gb", "fp16", 1, 2048, 1, 1)).shape
    base = prior_params()
    faster = {**base, "hs_c": 1.4}
    for harness, changes in (("static", True), ("trtllm-bench", False)):
        s = dataclasses.replace(shape, harness=harness)
        before, after = _seconds(s, base, "gemm"), _seconds(s, faster, "gemm")
        assert (after < 0.9 * before) if changes else after == pytest.approx(before)


def test_all_reduce_cannot_cost_more_than_nccl_bandwidth_allows():
    # Llama 2 70B FP8, TP8 on H100, 2,048-token prefill: the published TTFT is 84 ms. With the link
    # efficiency free down to 0.1 the family-out fit priced the all-reduces alone at over 200 ms.
    shape = resolve(Query(L70, "h100-sxm", "fp8", 1, 2048, 1, 8)).shape
    shape = dataclasses.replace(shape, harness="static")
    worst = {**prior_params(), "link_eff": PRIORS["link_eff"][2], "ar_us": 10.0}
    assert PRIORS["link_eff"][2] >= 0.5
    assert _seconds(shape, worst, "comm") * 1e3 < 0.6 * 84.4  # room left for the GEMMs


def test_prefill_all_reduce_is_bandwidth_bound_and_decode_latency_bound():
    shape = resolve(Query(L70, "h100-sxm", "fp8", 8, 2048, 128, 8)).shape
    p = prior_params()
    slow_link, slow_latency = {**p, "link_eff": 0.5}, {**p, "ar_us": 2 * p["ar_us"]}
    pre = _seconds(shape, p, "comm")
    assert _seconds(shape, slow_link, "comm") > 1.4 * pre  # large messages follow the bandwidth
    dec = _seconds(shape, p, "comm", "decode")
    assert _seconds(shape, slow_latency, "comm", "decode") > 1.5 * dec  # small ones the latency


def test_plain_roofline_keeps_its_full_link():
    shape = resolve(Query(L70, "h100-sxm", "fp8", 1, 2048, 1, 8)).shape
    items = Items([work_items(shape)])
    sel = items.kind == "comm"
    expect = (items.bytes[sel] / items.link[sel] * items.mult[sel]).sum()
    assert items.seconds(calibrate.PLAIN_ROOFLINE)[sel].sum() == pytest.approx(expect)
    assert np.isfinite(expect) and expect > 0


def test_every_catalog_gpu_states_its_sm_count():
    assert all(g.sms > 0 for g in catalog.gpus().values())
    assert catalog.gpu("h200").sms == catalog.gpu("h100-sxm").sms == 132 and catalog.gpu("a100-sxm-80gb").sms == 108


def test_sms_cap_the_bandwidth_a_memory_bound_kernel_reaches():
    # H200 = H100's 132 SMs behind 1.43x the bandwidth: published decode-bound rows gain 1.2-1.25x, not 1.43x.
    p = {**prior_params(), "sm_gb_s": 30.0, "knee_p": 100.0}  # hard max: batch-1 decode is all memory
    shape = {g: resolve(Query(L7, g, "fp8", 1, 128, 512, 1)).shape for g in ("h100-sxm", "h200")}
    dec = {g: _seconds(s, p, "gemm", "decode") for g, s in shape.items()}
    ratio = dec["h100-sxm"] / dec["h200"]
    assert 1.0 < ratio < 0.95 * 4.8 / 3.35
    # with no cap (the plain roofline's setting) the gain is the bandwidth ratio again
    nocap = {g: _seconds(s, {**p, "sm_gb_s": 1e12}, "gemm", "decode") for g, s in shape.items()}
    assert nocap["h100-sxm"] / nocap["h200"] == pytest.approx(4.8 / 3.35, rel=1e-3)
    # fewer SMs, same bandwidth: slower; a GPU whose SM count is unknown gets no cap
    few = dataclasses.replace(shape["h200"], gpu=dataclasses.replace(shape["h200"].gpu, sms=66))
    unknown = dataclasses.replace(shape["h200"], gpu=dataclasses.replace(shape["h200"].gpu, sms=0))
    assert _seconds(few, p, "gemm", "decode") > dec["h200"] > _seconds(unknown, p, "gemm", "decode")
    assert _seconds(unknown, p, "gemm", "decode") == pytest.approx(nocap["h200"])
