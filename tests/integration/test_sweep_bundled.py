"""The real pipeline on the bundled model: modelopt calibration, evaluation, store, CLI.

Small calibration settings keep it to a few minutes on 2 cores; the assertions are on real values.
"""

import json

import pytest

from engine import pipeline
from engine.cli import main
from engine.spec import DataSpec, ModelRef, Recipe, SweepSpec
from engine.store import open_store
from tests.conftest import requires_bundled

pytestmark = requires_bundled

# AWQ's search costs grow with calibration tokens: 2 x 64 keeps the module to a few minutes on 2 cores.
DATA = DataSpec(calib_size=2, calib_seq_len=64, eval_tokens=1024, eval_seq_len=256)
RECIPES = [Recipe("fp8"), Recipe("int8_sq"), Recipe("int4_awq"), Recipe("w4a8_awq"), Recipe("bf16", "magnitude")]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    import os

    home = tmp_path_factory.mktemp("sweep-home")
    old = os.environ.get("TLAB_HOME")
    os.environ["TLAB_HOME"] = str(home)
    stages = []
    try:
        store = open_store()
        records = pipeline.run_sweep(SweepSpec(ModelRef(), tuple(RECIPES), DATA, experiment="it"), store,
                                     lambda f, s: stages.append((f, s)))
        yield {"home": home, "records": records, "stages": stages}
    finally:
        if old is None:
            os.environ.pop("TLAB_HOME", None)
        else:
            os.environ["TLAB_HOME"] = old


def _by(records, precision, sparsity="none"):
    return next(r for r in records if r.precision == precision and r.sparsity == sparsity)


def test_accuracy_ordering_is_plausible(sweep):
    recs = sweep["records"]
    base = _by(recs, "bf16").metrics["perplexity"]
    assert 5 < base < 60, base  # a 135M chat model on Python docs
    fp8 = _by(recs, "fp8").metrics
    assert abs(fp8["perplexity"] / base - 1) < 0.06  # FP8 within a few percent
    for p in ("int4_awq", "w4a8_awq"):
        assert _by(recs, p).metrics["perplexity"] > fp8["perplexity"]
    sparse = _by(recs, "bf16", "magnitude").metrics["perplexity"]
    assert sparse > 2 * base  # 2:4 magnitude pruning without fine-tuning is far worse than dense
    for r in recs:
        m = r.metrics
        assert 0 <= m["top1_agreement"] <= 1 and m["kl_div"] >= 0
    assert fp8["kl_div"] < _by(recs, "int4_awq").metrics["kl_div"]


def test_progress_is_reported_in_order(sweep):
    fractions = [f for f, _ in sweep["stages"]]
    assert fractions[-1] == 1.0
    assert any("calibrating" in s for _, s in sweep["stages"])
    assert any("baseline" in s for _, s in sweep["stages"])


def test_every_result_carries_measured_provenance(sweep):
    for r in sweep["records"]:
        acc = r.provenance["accuracy"]
        assert acc["kind"] == "measured" and acc["device"].startswith("cpu")
        assert "nvidia-modelopt" in acc["versions"]
        assert "speedup" not in r.metrics  # no speed stage ran: no speedup may appear
        assert r.status == "done"  # the sweep finished: none is left marked partial


def test_rerun_reuses_and_json_export_matches(sweep, capsys, monkeypatch):
    monkeypatch.setenv("TLAB_HOME", str(sweep["home"]))
    # Same sweep again through the CLI: every result comes from the store (no model load).
    code = main(["sweep", "--precisions", "fp8,int8_sq,int4_awq,w4a8_awq", "--calib-size", "2",
                 "--calib-seq-len", "64", "--eval-tokens", "1024", "--eval-seq-len", "256", "--experiment", "it", "--format", "json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    stored = {r.id: r for r in sweep["records"]}
    for obj in printed:
        assert obj["perplexity"] == pytest.approx(stored[obj["id"]].metrics["perplexity"])
        assert obj["provenance"] == "measured"
    assert main(["results", "--format", "json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert {o["id"] for o in exported} == set(stored)
    assert {(o["precision"], o["sparsity"]) for o in exported} >= {("fp8", "none"), ("bf16", "magnitude")}


def test_adding_one_precision_computes_only_that_one(sweep, monkeypatch):
    monkeypatch.setenv("TLAB_HOME", str(sweep["home"]))
    store = open_store()
    computed = []
    records = pipeline.run_sweep(SweepSpec(ModelRef(), (*RECIPES, Recipe("fp16")), DATA, experiment="it"), store,
                                 lambda f, s: computed.append(s))
    assert len(records) == len(RECIPES) + 2  # + baseline + fp16
    assert not any("calibrating" in s for s in computed)  # fp16 needs no calibration; nothing else reran
    assert len(store.list_results()) == len(RECIPES) + 2
    fp16 = _by(records, "fp16").metrics
    assert fp16["perplexity"] == pytest.approx(_by(records, "bf16").metrics["perplexity"], rel=0.01)
