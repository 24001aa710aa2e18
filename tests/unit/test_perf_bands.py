"""The stated uncertainty band (engine/perf/bands.py), the held-out protocols' pure parts
(engine/perf/holdout.py) and the parity picture (engine/perf/plots.py)."""

import math

import numpy as np
import pandas as pd
import pytest

from engine.perf import bands, holdout, plots


def test_conformal_quantile_is_the_finite_sample_rank():
    assert bands.conformal_quantile(np.arange(1, 100), 0.8) == 80  # ceil(100 * 0.8) = 80th smallest
    assert bands.conformal_quantile([0.1, 0.2], 0.8) == math.inf  # too few points to state an 80% interval


def test_conformal_band_covers_new_points_at_the_nominal_rate():
    rng = np.random.default_rng(0)
    q = bands.conformal_quantile(np.abs(rng.normal(0, 0.2, 300)), 0.8)
    cover = (np.abs(rng.normal(0, 0.2, 20000)) <= q).mean()
    assert 0.76 <= cover <= 0.86


def _res(group_err: dict, model_id: str = "meta-llama/Llama-2-7b-hf", n: int = 20) -> pd.DataFrame:
    rows = []
    for grp, err in group_err.items():
        for i in range(n):
            rows.append(dict(protocol="gpu_id", held_out=grp, gpu_id=grp, model_id=model_id,
                             family=bands.model_family(model_id), metric="throughput", phase="decode",
                             gpu_seen=False, family_seen=True, log_ratio=err * (1 + i / n)))
    return pd.DataFrame(rows)


def test_cross_coverage_never_uses_the_held_out_groups_own_residuals():
    res = _res({"a100": 1.0, "h100": 0.01, "h200": 0.01})
    band = bands.cross_coverage(res)
    inside = res.log_ratio.abs() <= band
    assert not inside[res.gpu_id == "a100"].any()  # its band came from the small errors of the others
    assert inside[res.gpu_id != "a100"].all()  # theirs includes a100's large errors


def test_regimes_and_fallback():
    tab = bands.table(_res({"a100": 0.1, "h100": 0.2}))
    q, basis = bands.lookup(tab, "GPU unseen", "decode")
    assert 0.1 < q < 0.4 and "40 held-out points (GPU unseen, decode)" == basis
    q2, basis2 = bands.lookup(tab, "GPU and family seen", "decode")  # no cell: every regime together
    assert q2 == q and "any" in basis2
    assert bands.lookup(tab, "GPU unseen", "ttft")[0] == math.inf


def test_an_moe_model_has_its_own_band_and_leaves_the_dense_one_alone():
    dense = _res({"a100": 0.1, "h100": 0.2})
    moe = _res({"a100": 1.0, "h100": 1.5}, model_id="mistralai/Mixtral-8x7B-v0.1", n=10)
    tab = bands.table(pd.concat([dense, moe]))
    q_dense, _ = bands.lookup(tab, "GPU unseen", "decode")
    q_moe, basis = bands.lookup(tab, "GPU unseen", bands.quantity("throughput", "decode", moe=True))
    assert q_dense == bands.lookup(bands.table(dense), "GPU unseen", "decode")[0]  # MoE errors do not widen it
    assert q_moe > 1.0 and "(MoE)" in basis


def test_too_few_moe_points_fall_back_to_the_dense_band_and_say_so():
    dense = _res({"a100": 0.1, "h100": 0.2})
    thin = _res({"a100": 1.0}, model_id="mistralai/Mixtral-8x7B-v0.1", n=3)
    tab = bands.table(pd.concat([dense, thin]))
    q, basis = bands.lookup(tab, "GPU unseen", "decode (MoE)")
    assert q == bands.lookup(tab, "GPU unseen", "decode")[0] and "so the dense band" in basis


def test_the_shipped_band_of_an_moe_model_is_wider_than_a_dense_models():
    for qty in ("decode", "prefill", "ttft"):
        dense, moe = bands.band(False, True, qty), bands.band(False, True, qty, moe=True)
        assert moe[0] > dense[0] or "so the dense band" in moe[2], qty  # prefill: too few MoE points
    assert bands.band(False, True, "decode", moe=True)[0] > 2 * bands.band(False, True, "decode")[0]
    assert bands.is_moe("mistralai/Mixtral-8x7B-v0.1") and not bands.is_moe("meta-llama/Llama-2-7b-hf")


@pytest.mark.parametrize("mid, fam", [("meta-llama/Llama-3.1-70B", "llama-3"),
                                      ("meta-llama/Meta-Llama-3-8B", "llama-3"),
                                      ("meta-llama/Llama-2-7b-hf", "llama-2"), ("EleutherAI/gpt-j-6b", "gpt-j"),
                                      ("mistralai/Mixtral-8x7B-v0.1", "mixtral"), ("tiiuae/falcon-180B", "falcon")])
def test_model_family(mid, fam):
    assert bands.model_family(mid) == fam


def test_trtllm_version():
    assert holdout.trtllm_version("nvidia-modelopt v0.21.1 + TensorRT-LLM v0.15 (trtllm-bench)") == "0.15"
    assert holdout.trtllm_version("TensorRT-LLM v0.5.0 + TensorRT 9.1") == "0.5"
    assert holdout.trtllm_version("TensorRT-LLM (version not stated)") is None


def test_protocol_points_carry_their_groups():
    t, f = holdout.throughput_points(), holdout.ttft_points()
    assert len(t) > 150 and t.version.notna().all()
    assert set(t.family) >= {"llama-2", "llama-3", "gpt-j", "mixtral"}
    assert len(f) > 40 and (f.value > 0).all() and set(f.metric) == {"ttft"}


def test_shipped_residuals_cover_every_protocol_and_state_the_band():
    h = bands.heldout()
    assert set(h.protocol) == set(holdout.PROTOCOLS) and set(h.metric) == {"throughput", "ttft"}
    assert np.allclose(h.log_ratio, np.log(h.predicted / h.value), atol=1e-4, equal_nan=True)
    for reg in ("GPU unseen", "family unseen", "GPU and family seen"):
        q, basis = bands.lookup(bands.shipped_table(), reg, "decode")
        assert 0 < q < 2 and "held-out points" in basis
    rel, reg, _ = bands.band(False, True, "decode")
    q = bands.lookup(bands.shipped_table(), reg, "decode")[0]
    assert reg == "GPU unseen" and rel == pytest.approx(math.expm1(q))


def test_parity_figure_is_log_log_by_protocol_with_the_focus_median():
    h = bands.heldout()
    fig = plots.parity_figure(h, "h200", "llama-3", nominal=0.8, band_rel=0.2).to_dict()
    assert fig["layout"]["xaxis"]["type"] == "log" and fig["layout"]["yaxis"]["type"] == "log"
    names = {t["name"] for t in fig["data"]}
    protocols = {n.split(" ·")[0] for n in names}
    assert {"leave-one-GPU-out", "leave-one-model-family-out", "leave-one-source-out"} <= protocols
    assert "80% band of this estimate" in names
    med, n = holdout.median_errors(h, "h200", "llama-3")["GPU h200 unseen"]
    assert n > 0 and f"GPU h200 unseen: {med:.0%} (n {n})" in fig["layout"]["title"]["text"]


def test_an_estimate_states_the_band_of_its_regime():
    from engine.perf import calibrate
    from engine.perf.estimate import Query, estimate

    cal = calibrate.default_calibration(include_store=False)
    tab = bands.shipped_table()
    for gpu, reg in (("h200", "GPU and family seen"), ("l40s", "GPU unseen")):
        e = estimate(Query("meta-llama/Llama-3.1-8B", gpu, "fp8", 8, 2048, 128), cal)
        b = e.breakdown_s
        dec = sum(v for k, v in b.items() if k.startswith("decode"))
        phase = "decode" if dec > sum(b.values()) - dec else "prefill"
        q = bands.lookup(tab, reg, phase)[0]
        assert e.band_nominal == 0.8 and f"'{reg}' regime" in e.provenance_detail["uncertainty"]
        assert e.output_tokens_per_sec_high == pytest.approx(e.output_tokens_per_sec * math.exp(q), rel=1e-3)
    # a model family the fit never saw gets the family-unseen band, wider than the seen one here
    seen = estimate(Query("meta-llama/Llama-3.1-8B", "h200", "bf16", 1, 128, 128), cal)
    unseen = estimate(Query("Qwen/Qwen3-8B", "h200", "bf16", 1, 128, 128), cal)
    assert "'family unseen' regime" in unseen.provenance_detail["uncertainty"]
    assert unseen.uncertainty_rel > seen.uncertainty_rel


def test_shipped_residuals_are_not_stale():
    """heldout.csv (and so every band) was computed from the estimator's current code and data: after a
    change to either, rerun `python benchmarks/estimator_accuracy.py --write`."""
    from engine.perf import bands

    saved = bands.FINGERPRINT_FILE.read_text().strip() if bands.FINGERPRINT_FILE.is_file() else "missing"
    assert saved == bands.fingerprint(), (
        "engine/perf/heldout.csv is stale: run `python benchmarks/estimator_accuracy.py --write`")
