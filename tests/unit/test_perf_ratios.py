"""Published speedup ratios as calibration evidence, and W4A8 sharing INT4's weight path."""

import numpy as np
import pandas as pd

from engine.perf import calibrate, ratios
from engine.perf.params import PRIORS, TIED, prior_params


def test_published_ratios_are_the_2024_documents_and_the_blog():
    r = ratios.published_ratios()
    assert {"TensorRT-Model-Optimizer benchmark.md@06a15538", "TensorRT-Model-Optimizer benchmark.md@2a3f7cf2",
            "TensorRT-LLM quantization-in-TRT-LLM.md@66ef1df4"} == set(r.source)
    assert set(r.base_precision) == {"fp16"} and set(r.gpu_id) == {"h100-sxm"}
    assert set(r.harness) == {"static"}  # none of them ran trtllm-bench
    assert not (r.speedup_per_gpu == 2.30).any()  # the latency-constrained claim compares other batches
    mo = r[r.source.str.contains("06a15538")]
    assert mo.isl.isna().all() and len(mo) == 12 and set(mo.precision) == {"fp8", "int4_awq"}


def test_unstated_tp_is_the_smallest_that_holds_the_batch():
    r = ratios.published_ratios()
    row = r[(r.model_id == "meta-llama/Meta-Llama-3-70B") & (r.precision == "int4_awq")].head(1)
    shapes, owner, scen = ratios.ratio_shapes(row)
    assert len(shapes) == 2 * len(ratios.RATIO_LENGTHS) and set(owner) == {0}
    fmt, base = shapes[0::2], shapes[1::2]
    assert all(s.tp == 1 for s in fmt) and all(s.tp >= 2 for s in base)  # FP16 70B needs 2+ H100s


def test_each_document_gets_the_split_that_fits_it_best():
    r = ratios.published_ratios()
    r = r[r.source.str.contains("2a3f7cf2")].reset_index(drop=True)
    timer = ratios.RatioTimer(r)
    p = prior_params()
    per_split = [timer.lengths[i] for i in range(len(ratios.RATIO_LENGTHS))]
    # measured values made under one split are recognised as that split
    target = per_split[3]
    sel = np.flatnonzero(timer.scenario == 3)
    fake = np.full(len(r), np.nan)
    fake[timer.owner[sel]] = np.exp(timer._log_ratios(p)[sel])
    got = timer(p, fake)
    assert timer.chosen[r.source[0]] == target
    np.testing.assert_allclose(got, fake, rtol=1e-9)


def test_fit_with_ratios_reports_them_and_loso_holds_out_their_source(monkeypatch):
    seen = []

    def spy(points, *a, ratios=None, **k):
        seen.append(set(ratios.source) if ratios is not None else set())
        return calibrate.Calibration(prior_params())

    pts = calibrate.published_points()
    r = ratios.published_ratios()
    small = pts[pts.source == pts.source.iloc[0]].head(2)
    mixed = pd.concat([small, small.assign(source=r.source.iloc[0])], ignore_index=True)
    monkeypatch.setattr(calibrate, "fit", spy)
    calibrate.leave_one_source_out(mixed, ratios=r)
    assert r.source.iloc[0] in seen[0] and r.source.iloc[0] not in seen[1]


def test_w4a8_shares_int4_weight_path_and_fp8_compute():
    assert not any(k in PRIORS for k in TIED)
    assert TIED["m_w4a8_awq"] == "m_int4_awq" and TIED["c_w4a8_awq"] == "c_fp8"
    q = pd.DataFrame([dict(gpu_id="h200", model_id="meta-llama/Llama-3.1-8B", precision=p, sparsity="none",
                           batch=1, isl=128, osl=128, tp=1, output_tokens_per_sec=1.0, source="t",
                           provenance="published", harness="trtllm-bench", batch_mode="fixed")
                      for p in ("w4a8_awq", "fp8")])
    base = calibrate.predict(q, prior_params())
    slow_int4 = calibrate.predict(q, {**prior_params(), "m_int4_awq": 0.2})
    assert slow_int4[0] < base[0] * 0.9 and slow_int4[1] == base[1]  # W4A8 loads weights like INT4
