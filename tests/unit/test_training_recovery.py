"""Training results on the sweep axes (perplexity, task accuracy), the recovery table, the published
reference rows and the trained points/arrows of the trade-off chart."""

import copy
import math

import pandas as pd
import pytest

from engine import plots
from engine.errors import TlabError
from engine.store import open_store
from engine.training import recovery
from engine.training import run as training_run
from engine.training.spec import TrainingSpec

DEVICE = "cpu: test CPU (2 cores)"


@pytest.fixture
def store():
    s = open_store()
    yield s
    s.close()


def report(spec, original=3.2, finetuned=2.0, before=2.6, after=2.15, tasks=None):
    """A hand-built report (the figures are test inputs, never shown to a user)."""
    return training_run.TrainingReport(spec, original, finetuned, before, after, spec.steps, 1024, 0, False,
                                       training_run.run_dir(spec), tasks=tasks or {})


def score(acc, se=0.02, n=100):
    return {"task": "tlab_doc_continuation", "accuracy": acc, "stderr": se, "n_questions": n, "num_fewshot": 0,
            "task_version": "1", "lm_eval_version": "0.4", "metric": "acc", "limit": n}


# --- the spec option ------------------------------------------------------------------------------

def test_task_limit_is_optional_and_keeps_ids_and_the_shared_baseline():
    plain = TrainingSpec(precision="w4a8_awq")
    assert plain.id == "e09d3ffee2ac2bdc"  # the id before the option existed
    assert "task_limit" not in plain.to_dict()
    scored = TrainingSpec(precision="w4a8_awq", task_limit=50)
    assert scored.id != plain.id and scored.to_dict()["task_limit"] == 50
    assert TrainingSpec.from_dict(scored.to_dict()) == scored
    assert scored.baseline().id == plain.baseline().id  # one fine-tuned baseline whatever is scored
    with pytest.raises(TlabError, match="task limit must be a positive whole number"):
        TrainingSpec(precision="w4a8_awq", task_limit=0)


def test_cli_takes_a_task_limit():
    import argparse

    from engine.training.cli import add_train_parser, spec_from_args

    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    assert spec_from_args(parser.parse_args(["train", "--task-limit", "40"])).task_limit == 40
    assert spec_from_args(parser.parse_args(["train"])).task_limit is None
    qat = spec_from_args(parser.parse_args(["train"]))
    sparse = spec_from_args(parser.parse_args(["train", "--mode", "sparse_ft", "--sparsity", "sparsegpt"]))
    assert (qat.steps, qat.learning_rate, qat.warmup) == (40, 5e-5, 4)
    assert (sparse.steps, sparse.learning_rate, sparse.warmup) == (100, 2e-4, 10)  # its own defaults
    typed = spec_from_args(parser.parse_args(["train", "--mode", "sparse_ft", "--sparsity", "magnitude", "--lr", "1e-5"]))
    assert (typed.steps, typed.learning_rate) == (100, 1e-5)  # what the user typed wins
    short = spec_from_args(parser.parse_args(["train", "--mode", "sparse_ft", "--sparsity", "sparsegpt", "--steps", "5"]))
    assert short.warmup == 1  # a shorter run shortens the untyped warm-up instead of refusing it


# --- figures on the sweep axes ----------------------------------------------------------------------

def test_perplexity_figures_are_exp_of_the_validation_losses():
    spec = TrainingSpec(precision="w4a8_awq")
    m = training_run.to_result(report(spec), "SmolLM2", DEVICE).metrics
    assert m["perplexity"] == pytest.approx(math.exp(2.15))
    assert m["baseline_perplexity"] == pytest.approx(math.exp(2.0))
    assert m["perplexity_before"] == pytest.approx(math.exp(2.6))
    assert m["perplexity_original"] == pytest.approx(math.exp(3.2))
    assert m["ppl_increase_pct"] == pytest.approx(100 * (math.exp(2.15) / math.exp(2.0) - 1))
    assert m["ppl_increase_pct_before"] == pytest.approx(100 * (math.exp(2.6) / math.exp(2.0) - 1))
    assert m["gap_closed_pct"] == pytest.approx(75.0)
    baseline = training_run.to_result(report(spec.baseline(), before=3.2, after=2.0), "SmolLM2", DEVICE).metrics
    assert baseline["ppl_increase_pct"] == 0.0 and "ppl_increase_pct_before" not in baseline


def test_a_stopped_run_has_no_trained_perplexity():
    spec = TrainingSpec(mode="sparse_ft", sparsity="sparsegpt")
    m = training_run.perplexity_metrics(report(spec, after=None))
    assert "perplexity" not in m and "ppl_increase_pct" not in m and "ppl_increase_pct_before" in m


def test_task_scores_of_each_stage_go_beside_the_sweep_names():
    spec = TrainingSpec(precision="w4a8_awq", task_limit=100)
    tasks = {"baseline": {"tlab_doc_continuation": score(0.80)}, "before": {"tlab_doc_continuation": score(0.60)},
             "after": {"tlab_doc_continuation": score(0.75, se=0.03)}}
    result = training_run.to_result(report(spec, tasks=tasks), "SmolLM2", DEVICE)
    m, t = result.metrics, "tlab_doc_continuation"
    assert m[f"task_acc:{t}"] == 0.75 and m[f"task_loss_pts:{t}"] == pytest.approx(5.0)
    assert m[f"task_loss_pts_stderr:{t}"] == pytest.approx(100 * math.hypot(0.02, 0.03))
    assert m[f"task_acc_before:{t}"] == 0.60 and m[f"task_loss_pts_before:{t}"] == pytest.approx(20.0)
    assert m[f"task_acc_finetuned_baseline:{t}"] == 0.80 and f"task_loss_pts_finetuned_baseline:{t}" not in m
    assert result.provenance["task_accuracy"]["tasks"][t]["n_questions"] == 100
    assert "fine-tuned" in result.provenance["task_accuracy"]["compared_with"]
    assert plots.accuracy_axes(pd.DataFrame([m])).keys() >= {"ppl", f"task:{t}"}


# --- the run scores each stage once ---------------------------------------------------------------

torch_needed = pytest.mark.skipif(__import__("importlib").util.find_spec("modelopt") is None, reason="needs modelopt")


@torch_needed
def test_a_run_scores_baseline_parent_and_trained_models_once_each(store):
    import torch

    from engine.models.loader import LoadedModel
    from tests.helpers_quant import VOCAB, tiny_llama

    tiny = tiny_llama(hidden=64, heads=2, kv_heads=1)

    class CharTokenizer:
        def __call__(self, text, return_tensors="pt"):
            class Out:
                input_ids = torch.tensor([[ord(c) % VOCAB for c in text]])
            return Out()

    def load(ref, device):
        return LoadedModel(copy.deepcopy(tiny), CharTokenizer(), "tiny-llama", None)

    scored = []

    probe = torch.arange(32).reshape(1, 32) % VOCAB

    def scorer(model, tokenizer, limit):  # a stand-in for lm-eval: a figure of the model it is given
        with torch.no_grad():
            scored.append(float(model(input_ids=probe, labels=probe).loss))
        return {"tlab_doc_continuation": training_run_score(1 / (1 + scored[-1]), limit)}

    spec = TrainingSpec(mode="sparse_ft", sparsity="magnitude", steps=3, learning_rate=1e-3, seq_len=32,
                        batch_size=2, warmup=1, eval_tokens=128, calib_size=2, checkpoint_every=2, device="cpu",
                        task_limit=20)
    done = training_run.run_training(spec, store, load=load, score=scorer)
    assert len(scored) == 3 and len(set(scored)) == 3  # fine-tuned, pruned, trained: three different models
    m = store.get_result(spec.id).metrics
    t = "tlab_doc_continuation"
    assert {f"task_acc:{t}", f"task_acc_before:{t}", f"task_acc_finetuned_baseline:{t}"} <= set(m)
    assert m["perplexity"] == pytest.approx(math.exp(done.after_loss))
    again = training_run.run_training(spec, store, load=load, score=scorer)
    assert len(scored) == 3 and again.tasks == done.tasks  # cached per run folder: nothing scored twice


def training_run_score(acc, limit):
    from engine.task_accuracy import TaskScore

    return TaskScore("tlab_doc_continuation", acc, 0.05, limit, 0, "1", "test")


# --- the recovery table and the published rows -----------------------------------------------------

def test_recovery_table_has_one_row_per_trained_recipe(store):
    qat = TrainingSpec(precision="w4a8_awq", task_limit=100)
    tasks = {"baseline": {"tlab_doc_continuation": score(0.80)}, "before": {"tlab_doc_continuation": score(0.60)},
             "after": {"tlab_doc_continuation": score(0.75)}}
    store.save_result(training_run.to_result(report(qat, tasks=tasks), "SmolLM2", DEVICE))
    store.save_result(training_run.to_result(report(qat.baseline(), before=3.2, after=2.0), "SmolLM2", DEVICE))
    sparse = TrainingSpec(mode="sparse_ft", sparsity="sparsegpt")
    store.save_result(training_run.to_result(report(sparse, before=3.0, after=2.5), "SmolLM2", DEVICE))
    table = recovery.recovery_table(store.list_results())
    assert len(table) == 2  # not the fine-tuned baseline
    row = table.set_index("recipe").loc["W4A8 AWQ (after QAT)"]
    assert (row.parent, row.baseline_loss, row.parent_loss, row.trained_loss) == ("W4A8 AWQ (PTQ)", 2.0, 2.6, 2.15)
    assert row.gap_closed_pct == pytest.approx(75.0)
    assert [c for c in table.columns if "·" in c] == [f"tlab_doc_continuation · {s} (%)" for s in (
        "Fine-tuned baseline", "PTQ / sparsified", "After training")]
    assert row["tlab_doc_continuation · PTQ / sparsified (%)"] == "60.0 ± 2.0"
    assert row["tlab_doc_continuation · After training (%)"] == "75.0 ± 2.0"
    sp = table.set_index("recipe").loc["2:4 SparseGPT (after sparse fine-tuning)"]
    assert sp.gap_closed_pct == pytest.approx(50.0) and sp.source.startswith("measured")
    assert isinstance(sp["tlab_doc_continuation · After training (%)"], float)  # not scored: empty


def test_published_rows_are_the_references_and_say_so():
    pub = recovery.published_recovery().set_index(["model", "dataset", "recipe"])
    w4a8 = pub.loc[("Llama 2 7B", "samsum", "INT4 weight INT8 activation QAT")]
    assert (w4a8.baseline_loss, w4a8.parent_loss, w4a8.trained_loss) == (1.036, 3.321, 1.294)
    assert w4a8.parent == "INT4 weight INT8 activation PTQ"
    assert w4a8.gap_closed_pct == pytest.approx(100 * (3.321 - 1.294) / (3.321 - 1.036))
    sparse = pub.loc[("Llama 2 70B", "Open-Orca", "FP8 + 2:4 sparsity with fine-tuning")]
    assert (sparse.baseline_loss, sparse.parent_loss, sparse.trained_loss) == (0.721, 2.724, 1.01)
    assert len(pub) == 5 and all(s.startswith("published, different model") for s in pub.source)


def test_recovery_figure_keeps_measured_and_published_on_separate_axes(store):
    store.save_result(training_run.to_result(report(TrainingSpec(precision="int8_sq")), "SmolLM2", DEVICE))
    fig = recovery.recovery_figure(recovery.recovery_table(store.list_results()), recovery.published_recovery())
    axes = {(t.xaxis, t.name) for t in fig.data}
    assert axes == {(x, s) for x in ("x", "x2") for s in ("Fine-tuned baseline", "PTQ / sparsified", "After training")}
    measured = [t for t in fig.data if t.xaxis == "x" and t.name == "After training"][0]
    assert list(measured.y) == [2.15] and list(measured.x) == ["INT8 SmoothQuant (after QAT)"]
    titles = [a.text for a in fig.layout.annotations]
    assert any(t.startswith("Published, different models") for t in titles)


# --- on the trade-off chart ----------------------------------------------------------------------

def sweep_record(precision, speedup, device=DEVICE, model="SmolLM2", sparsity="none"):
    from tests.app.results_data import make_record

    rec = make_record("sweep-1", precision, device=device, model=model, batch_sizes=(1,))
    rec["metrics"]["speedup_bs1"] = rec["metrics"]["speedup"] = speedup
    rec["sparsity"] = sparsity
    return rec


def test_trained_points_take_the_speedup_of_their_deployed_format(store):
    qat = TrainingSpec(precision="int8_sq")
    store.save_result(training_run.to_result(report(qat), "SmolLM2", DEVICE))
    sparse = TrainingSpec(mode="sparse_ft", sparsity="sparsegpt")
    store.save_result(training_run.to_result(report(sparse, before=3.0, after=2.5), "SmolLM2", DEVICE))
    fp8 = TrainingSpec(precision="fp8")
    store.save_result(training_run.to_result(report(fp8), "SmolLM2", DEVICE))
    store.save_results([sweep_record("bf16", 1.0), sweep_record("int8_sq", 1.37),
                        sweep_record("fp8", 1.2, device="cuda: another GPU")])
    chart = plots.chart_frame(store.results_frame(), 1)
    arrows = recovery.recovery_arrows(store.list_results(), chart).set_index("recipe")
    a = arrows.loc["INT8 SmoothQuant (after QAT)"]
    assert a.y_speedup == pytest.approx(1.37) and pd.isna(a.why_no_point)
    assert a.x_trained == pytest.approx(100 * (math.exp(0.15) - 1))
    assert a.x_parent == pytest.approx(100 * (math.exp(0.6) - 1))
    assert a.speed_from in set(chart["id"]) and "measured on" in a.speed_note
    sparse_row = arrows.loc["2:4 SparseGPT (after sparse fine-tuning)"]
    assert math.isnan(sparse_row.y_speedup)
    assert "no sweep of SmolLM2 with BF16 + 2:4 SparseGPT" in sparse_row.why_no_point
    assert "not on cpu: test CPU" in arrows.loc["FP8 (after QAT)"].why_no_point
    kl = recovery.recovery_arrows(store.list_results(), chart, "kl")
    assert kl["y_speedup"].isna().all() and kl["why_no_point"].str.contains("no figure for trained").all()

    fig = plots.add_training_arrows(plots.speedup_accuracy_figure(chart), arrows.reset_index())
    trained = [t for t in fig.data if t.marker.symbol == "star"]
    assert len(trained) == 1 and list(trained[0].text) == ["INT8 SmoothQuant (after QAT)"]
    arrow = [an for an in fig.layout.annotations if an.showarrow and an.arrowhead]
    assert len(arrow) == 1 and (arrow[0].ax, arrow[0].x) == (pytest.approx(a.x_parent), pytest.approx(a.x_trained))
