"""Calibration: fitting recovers efficiencies, leave-one-source-out never sees the held-out source,
and measured results of the user's store feed the fit."""

import numpy as np
import pandas as pd
import pytest

from engine.store.entities import Result
from engine.perf import calibrate
from engine.perf.estimate import Query, estimate
from engine.perf.params import prior_params


@pytest.fixture(scope="module")
def published():
    return calibrate.published_points()


def test_published_points_are_estimable_and_labelled(published):
    assert len(published) >= 150 and published.source.nunique() >= 8
    assert set(published.provenance) == {"published"}
    assert set(published.harness) == {"static", "trtllm-bench"}
    assert set(published.batch_mode) == {"fixed"}
    with_max = calibrate.published_points(include_max=True)
    assert set(with_max.batch_mode) == {"fixed", "max"} and len(with_max) > len(published) + 250
    assert (published.output_tokens_per_sec > 0).all()


def test_fit_beats_the_priors_in_sample(published):
    cal = calibrate.default_calibration(include_store=False)  # the shipped fit, memoized per process
    assert len(cal.points) >= len(published) - 2  # only rows that fit nowhere are dropped
    fitted = np.median(np.abs(cal.points.predicted / cal.points.output_tokens_per_sec - 1))
    prior = np.nanmedian(np.abs(calibrate.predict(published, prior_params()) / published.output_tokens_per_sec - 1))
    assert fitted < prior


def test_max_points_take_the_best_batch_that_fits(published):
    pts = calibrate.published_points(include_max=True)
    row = pts[pts.batch_mode == "max"].iloc[[0]]
    best = calibrate.predict(row, prior_params())[0]
    fixed = [calibrate.predict(row.assign(batch_mode="fixed", batch=b), prior_params())[0] for b in (1, 8, 64)]
    assert best >= max(fixed)


def test_measurements_on_a_new_gpu_pull_its_efficiency(published):
    """Points produced by a known 'true' efficiency on L40S (no published data there) are recovered."""
    truth = {**prior_params(), "gen_ada": 0.6}
    grid = pd.DataFrame([dict(gpu_id="l40s", model_id="meta-llama/Llama-3.1-8B", precision=p, sparsity="none",
                              batch=b, isl=1024, osl=128, tp=1, source="your store (l40s)",
                              provenance="measured", harness="trtllm-bench")
                         for p in ("bf16", "fp8") for b in (1, 4, 16)])
    grid["output_tokens_per_sec"] = calibrate.predict(grid, truth)
    before = calibrate.fit(published)
    after = calibrate.fit(pd.concat([published, grid], ignore_index=True))
    assert after.params["gen_ada"] == pytest.approx(0.6, rel=0.15)
    q = Query("meta-llama/Llama-3.1-8B", "l40s", "fp8", 8, 1024, 128)
    truth_tput = calibrate.predict(grid.iloc[[0]].assign(batch=8, precision="fp8"), truth)[0]
    err_before = abs(estimate(q, before).output_tokens_per_sec / truth_tput - 1)
    err_after = abs(estimate(q, after).output_tokens_per_sec / truth_tput - 1)
    assert err_after < err_before
    assert estimate(q, after).calibrated_from.startswith("6 measured points on l40s")


def test_leave_one_source_out_never_fits_on_the_held_out_source(published, monkeypatch):
    seen = []

    def spy(points, *a, **k):
        seen.append(set(points.source))
        return calibrate.Calibration(prior_params())

    monkeypatch.setattr(calibrate, "fit", spy)
    small = pd.concat([published[published.source == s].head(3) for s in published.source.unique()[:3]])
    # an exact copy of a held-out row under another source name must be held out with it
    dup = small.iloc[[0]].assign(source="a blog copying the table")
    out = calibrate.leave_one_source_out(pd.concat([small, dup], ignore_index=True))
    sources = list(small.source.unique())
    assert len(seen) == len(sources) + 1
    for held, fitted_on in zip(sources + ["a blog copying the table"], seen):
        assert held not in fitted_on
    assert "a blog copying the table" not in seen[0]  # the copy of source 0's row leaves with source 0
    assert out.predicted.notna().all()


def _record(device="cuda: NVIDIA H100 80GB HBM3", backend="tensorrt_llm", tput=1234.5):
    m = {"backend": backend, "precision": "fp8", "sparsity": "none", "batch_size": 8, "input_len": 512,
         "output_len": 128, "metrics": {"output_tokens_per_sec": tput}, "spread": {}, "repeats": 3,
         "provenance": {"kind": "measured", "device": {"kind": "cuda", "name": device.removeprefix("cuda: ")}}}
    return Result.from_dict({"id": "r1", "model": "meta-llama/Llama-3.1-8B", "precision": "fp8", "sparsity": "none",
                             "device": device, "spec": {}, "metrics": {"output_tokens_per_sec_bs8": tput},
                             "provenance": {"speed": {"kind": "measured", "backend": backend,
                                                      "measurements": [m]}}})


def test_store_records_become_points_and_others_are_skipped():
    pts = calibrate.records_to_points([_record(), _record(device="cpu: x86 (2 cores)"),
                                       _record(backend="pytorch"),
                                       Result("r2", "m", "fp8", provenance={"speed": {"kind": "estimated"}})])
    assert len(pts) == 1
    r = pts.iloc[0]
    assert (r.gpu_id, r.batch, r.isl, r.osl, r.output_tokens_per_sec, r.provenance) == \
        ("h100-sxm", 8, 512, 128, 1234.5, "measured")


def test_store_points_tolerate_missing_store_and_plain_frames():
    assert calibrate.store_points().empty  # fresh TLAB_HOME: no store yet
    assert calibrate.store_points(pd.DataFrame()).empty
    frame = pd.DataFrame([{"gpu": "NVIDIA L40S", "model": "meta-llama/Llama-3.1-8B", "precision": "fp8",
                           "batch": 4, "isl": 256, "osl": 64, "output_tokens_per_sec": 500.0},
                          {"gpu": "Intel Xeon", "model": "x", "precision": "bf16", "batch": 1, "isl": 1,
                           "osl": 1, "output_tokens_per_sec": 1.0}])
    pts = calibrate.store_points(frame)
    assert list(pts.gpu_id) == ["l40s"] and pts.provenance.iloc[0] == "measured"


@pytest.mark.parametrize("name, gid", [("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"),
                                       ("NVIDIA H200", "h200"), ("NVIDIA GH200 480GB", "gh200"),
                                       ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"), ("NVIDIA L4", "l4"),
                                       ("NVIDIA A100-SXM4-40GB", None), ("NVIDIA L40", None),
                                       ("NVIDIA GeForce RTX 4090", "rtx-4090"), ("NVIDIA B200", "b200"),
                                       (None, None)])
def test_gpu_names_map_to_catalog_ids(name, gid):
    assert calibrate.gpu_id_from_name(name) == gid


def test_page_reruns_during_a_fit_wait_for_it_instead_of_fitting_again(monkeypatch):
    """A Streamlit re-run that arrives while the GPU Selector's fit is under way must reuse that fit: two
    parallel fits of the same points on 2 cores made the page wait minutes (the browser test timed out)."""
    import threading
    import time

    fits = []

    def slow_fit(points, ratios=None):
        fits.append(threading.get_ident())
        time.sleep(0.3)
        return f"calibration of {len(points)} points"

    monkeypatch.setattr(calibrate, "fit_cached", slow_fit)
    monkeypatch.setattr(calibrate, "_FITS", {})
    got = []
    threads = [threading.Thread(target=lambda: got.append(calibrate.default_calibration(include_store=False)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fits) == 1 and len(set(got)) == 1 and len(got) == 4
