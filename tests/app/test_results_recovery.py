"""Results page: recovery by training (issue #12). Training results are named as trained, sit on the
trade-off chart at their deployed format's measured speed with an arrow from their parent, and get the
recovery table and bars beside the published rows. The figures are hand-built test inputs."""

from engine.training import run as training_run
from engine.training.spec import TrainingSpec
from tests.app.conftest import open_page, plotly_figures, trace_values
from tests.app.results_data import make_record

DEVICE = "cpu: test CPU (2 cores)"
MODEL = "SmolLM2-135M"


def _training(spec, finetuned=2.0, before=2.6, after=2.15):
    report = training_run.TrainingReport(spec, 3.0, finetuned, before, after, spec.steps, 4096, 0, False,
                                         training_run.run_dir(spec))
    return training_run.to_result(report, MODEL, DEVICE)


def _sweep(precision, speedup):
    rec = make_record("demo sweep", precision, device=DEVICE, model=MODEL, batch_sizes=(1,))
    rec["metrics"]["speedup_bs1"] = rec["metrics"]["speedup"] = speedup
    return rec


def _seed(store):
    qat = TrainingSpec(precision="int8_sq")
    store.save_results([_sweep("bf16", 1.0), _sweep("int8_sq", 1.4), _training(qat),
                        _training(qat.baseline(), before=3.0, after=2.0),
                        _training(TrainingSpec(mode="sparse_ft", sparsity="sparsegpt"), before=3.0, after=2.5)])


def test_trained_models_get_arrows_and_the_recovery_section(app_home):
    _seed(app_home)
    at = open_page("results")
    assert not at.exception, at.exception
    main, bars = plotly_figures(at)[:2]
    star = [t for t in main["data"] if t.get("marker", {}).get("symbol") == "star"]
    assert len(star) == 1 and star[0]["text"] == ["INT8 SmoothQuant (after QAT)"]
    assert trace_values(star[0]["y"]) == [1.4]  # the sweep's measured INT8 speedup
    arrows = [a for a in main["layout"]["annotations"] if a.get("showarrow") and a.get("arrowhead")]
    assert len(arrows) == 1 and arrows[0]["ax"] > arrows[0]["x"]  # from the PTQ parent to the trained point
    assert "Recovery by training" in [h.value for h in at.subheader]
    frames = [d.value for d in at.dataframe]  # a dataframe without row selection carries no key here
    table = next(f for f in frames if "trained_loss" in f.columns and "id" in f.columns)
    published = next(f for f in frames if "dataset" in f.columns)
    assert published["source"].str.startswith("published, different model").all()
    assert sorted(table["recipe"]) == ["2:4 SparseGPT (after sparse fine-tuning)", "INT8 SmoothQuant (after QAT)"]
    assert {t["name"] for t in bars["data"]} == {"Fine-tuned baseline", "PTQ / sparsified", "After training"}
    captions = "\n".join(c.value for c in at.caption)
    assert "no sweep of SmolLM2-135M with BF16 + 2:4 SparseGPT" in captions  # why the sparse run has no point
    results = at.dataframe(key="results_table").value
    assert "BF16 (fine-tuned)" in set(results["recipe"]) and "INT8 SmoothQuant (after QAT)" in set(results["recipe"])


def test_no_recovery_section_without_training_results(app_home):
    app_home.save_results([_sweep("bf16", 1.0), _sweep("int8_sq", 1.4)])
    at = open_page("results")
    assert not at.exception, at.exception
    assert "Recovery by training" not in [h.value for h in at.subheader]
    assert not [t for f in plotly_figures(at) for t in f["data"] if t.get("marker", {}).get("symbol") == "star"]
