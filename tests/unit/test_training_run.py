"""A training run end to end (fine-tuned baseline -> PTQ / 2:4 -> training -> stored figures) and as a
job, on a tiny random Llama with a character tokenizer so it takes seconds."""

import copy
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("modelopt.torch.quantization")

from engine.errors import SpecError, TlabError
from engine.models.loader import LoadedModel
from engine.store import open_store
from engine.store.job_functions import ENGINE_JOB_FUNCTIONS, check_job_fn
from engine.training import run as training_run
from engine.training.spec import TrainingSpec
from tests.helpers_quant import VOCAB, tiny_llama

SMALL = dict(steps=3, learning_rate=1e-3, seq_len=32, batch_size=2, warmup=1, eval_tokens=128, calib_size=2,
             checkpoint_every=2, device="cpu")


class CharTokenizer:
    def __call__(self, text, return_tensors="pt"):
        class Out:
            input_ids = torch.tensor([[ord(c) % VOCAB for c in text]])
        return Out()


@pytest.fixture(scope="module")
def loader():
    tiny = tiny_llama(hidden=64, heads=2, kv_heads=1)
    loads = []

    def load(ref, device):
        loads.append(ref.source)
        return LoadedModel(copy.deepcopy(tiny), CharTokenizer(), "tiny-llama", None)
    load.calls = loads
    return load


@pytest.fixture
def store():
    s = open_store()
    yield s
    s.close()


def test_qat_run_stores_the_reference_figures(loader, store):
    spec = TrainingSpec(mode="qat", precision="int8_sq", **SMALL)
    lines = []
    report = training_run.run_training(spec, store, lambda f=None, s=None, log=None: log and lines.append(log),
                                       load=loader)
    assert not report.stopped and report.steps == 3 and report.tokens_seen == 3 * 2 * 32
    assert report.checks["quantizers"]["enabled"] == report.checks["quantizers"]["calibrated"] > 0
    assert report.finetuned_loss < report.baseline_loss  # the baseline really was fine-tuned
    assert len(lines) == 6 and "step 3/3" in lines[-1] and "(after QAT)" in lines[-1]
    result = store.get_result(spec.id)
    assert result.precision == "int8_sq" and result.experiment == "training"
    m = result.metrics
    assert m["validation_loss_after"] == pytest.approx(report.after_loss)
    assert m["validation_loss_finetuned_baseline"] == pytest.approx(report.finetuned_loss)
    assert m["validation_loss_before"] == pytest.approx(report.before_loss)
    if report.gap_closed_pct is not None:
        assert m["gap_closed_pct"] == pytest.approx(report.gap_closed_pct)
    t = result.provenance["training"]
    assert (t["kind"], t["label"], t["steps"], t["tokens_seen"], t["data"], t["seed"]) == \
        ("measured", "INT8 SmoothQuant (after QAT)", 3, 192, "bundled", spec.seed)
    assert result.accuracy_kind == "measured" and "torch" in result.versions
    baseline = store.get_result(spec.baseline().id)
    assert baseline.precision == "bf16" and baseline.provenance["training"]["mode"] == "finetune"
    curve = [json.loads(r) for r in (report.run_dir / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == [1, 2, 3] and all(r["loss"] > 0 for r in curve)
    curves = training_run.loss_curves(spec)
    assert list(curves) == ["BF16 (fine-tuned)", "INT8 SmoothQuant (after QAT)"] and curves[spec.label] == curve

    # the same spec again reuses the checkpoints and cached figures: nothing is trained twice
    again = training_run.run_training(spec, store, load=loader)
    assert again.resumed_from == 3 and again.after_loss == report.after_loss


def test_a_stopped_sparse_run_resumes_and_verifies_its_mask(loader, store):
    spec = TrainingSpec(mode="sparse_ft", sparsity="magnitude", **{**SMALL, "steps": 4})
    calls = []  # the fine-tuned baseline's 4 steps come first; stop after the sparse stage's first

    def stop_in_sparse_stage(info):
        calls.append(info.step)
        return len(calls) < 5
    stopped = training_run.run_training(spec, store, on_step=stop_in_sparse_stage, load=loader)
    assert calls == [1, 2, 3, 4, 1] and stopped.stopped and store.get_result(spec.id) is None
    assert store.get_result(spec.baseline().id) is not None  # the finished stage is kept
    done = training_run.run_training(spec, store, load=loader)
    assert done.resumed_from == 1 and done.steps == 4 and not done.stopped
    assert done.checks["mask"]["layers"] > 0 and done.checks["mask"]["zeros"] > 0
    assert store.get_result(spec.id).provenance["training"]["checks"]["mask"] == done.checks["mask"]


def test_the_job_function_validates_its_payload(loader, monkeypatch):
    fn = "engine.training.run:run_training_job"
    assert fn in ENGINE_JOB_FUNCTIONS and check_job_fn(fn) == fn
    with pytest.raises(SpecError, match="payload must be"):
        training_run.run_training_job({"precision": "fp8"}, lambda *a, **k: None)
    with pytest.raises(TlabError, match="steps must be a positive"):
        training_run.run_training_job({"spec": {"precision": "fp8", "steps": 0}}, lambda *a, **k: None)
    monkeypatch.setattr(training_run, "run_training",
                        lambda spec, store, progress: training_run.TrainingReport(
                            spec, 1, 1, 1, 1, spec.steps, 0, 0, False, training_run.run_dir(spec)))
    spec = TrainingSpec(mode="qat", precision="int8_sq", **SMALL)
    ids = training_run.run_training_job(training_run.training_payload(spec), lambda *a, **k: None)
    assert ids == [spec.baseline().id, spec.id]
