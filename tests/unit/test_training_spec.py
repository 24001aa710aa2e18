"""TrainingSpec validation, the learning-rate schedule and `tlab train`'s refusals (no model loaded)."""

import pytest

from engine.errors import DataError, SpecError, TlabError
from engine.training.loop import Schedule, lr_at
from engine.training.spec import TrainingSpec


def test_defaults_are_valid_and_the_id_is_stable():
    a = TrainingSpec(precision="w4a8_awq")
    assert a.mode == "qat" and a.steps > 0 and a.learning_rate > 0
    assert a.id == TrainingSpec.from_dict(a.to_dict()).id == TrainingSpec(precision="w4a8_awq", steps=40.0).id
    assert a.id != TrainingSpec(precision="w4a8_awq", steps=41).id
    assert a.baseline().mode == "finetune" and a.baseline().precision is None
    assert a.baseline().id == TrainingSpec(mode="sparse_ft", sparsity="sparsegpt").baseline().id
    assert a.label == "W4A8 AWQ (after QAT)"


@pytest.mark.parametrize("changes, words", [
    ({"steps": 0}, "steps must be a positive"),
    ({"steps": -5}, "steps must be a positive"),
    ({"learning_rate": -1}, "learning rate must be a number above 0"),
    ({"learning_rate": 0}, "learning rate must be a number above 0"),
    ({"learning_rate": float("nan")}, "learning rate"),
    ({"batch_size": 0}, "batch size"),
    ({"warmup": 50, "steps": 10}, "lower --warmup"),
    ({"mode": "distill"}, "not one of finetune, qat, sparse_ft"),
    ({"precision": None}, "QAT needs a precision"),
    ({"precision": "bf16"}, "not quantized"),
    ({"precision": "int3"}, "int3"),
    ({"data": "hf:only-a-name"}, "hf:NAME:SPLIT"),
    ({"device": "tpu"}, "auto, cpu, cuda"),
])
def test_bad_settings_are_refused_with_what_to_do(changes, words):
    with pytest.raises(TlabError, match=words):
        TrainingSpec(**{"precision": "w4a8_awq", **changes})


def test_sparse_fine_tuning_needs_a_two_four_method():
    assert TrainingSpec(mode="sparse_ft", sparsity="sparsegpt").label == "2:4 SparseGPT (after sparse fine-tuning)"
    for bad in (None, "none"):
        with pytest.raises(SpecError, match="magnitude or sparsegpt"):
            TrainingSpec(mode="sparse_ft", sparsity=bad)


def test_training_files_are_checked_before_any_work(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n ")
    with pytest.raises(DataError, match="holds no text"):
        TrainingSpec(precision="w4a8_awq", data=str(empty))
    with pytest.raises(DataError, match="does not exist"):
        TrainingSpec(precision="w4a8_awq", data=str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match=r"\.txt .* or \.jsonl"):
        TrainingSpec(precision="w4a8_awq", data=str(empty.with_suffix(".csv")))


def test_from_dict_is_strict():
    with pytest.raises(SpecError, match="Unknown training spec field"):
        TrainingSpec.from_dict({"precision": "fp8", "stepz": 3})
    with pytest.raises(SpecError, match="JSON object"):
        TrainingSpec.from_dict(["qat"])


def test_unreachable_dataset_says_what_to_do(monkeypatch):
    pytest.importorskip("datasets")
    from engine.data import training_documents

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="Without internet use 'bundled'"):
        training_documents("hf:no-such-owner/no-such-dataset:train")


def test_training_text_never_overlaps_the_held_out_text():
    from engine.data import training_documents

    train, held_out = training_documents("bundled")
    assert train and held_out and not set(train) & set(held_out)


def test_schedule_warms_up_then_decays_to_zero():
    s = Schedule(steps=20, learning_rate=1e-4, warmup=4)
    lrs = [lr_at(i, s) for i in range(20)]
    assert lrs[0] == pytest.approx(2.5e-5) and lrs[3] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:])) and lrs[-1] < 2e-6


def test_cli_refuses_bad_input(capsys, tmp_path):
    from engine.cli import main

    assert main(["train", "--mode", "qat", "--precision", "w4a8_awq", "--steps", "0"]) == 2
    assert "steps must be a positive whole number" in capsys.readouterr().err
    assert main(["train", "--precision", "w4a8_awq", "--lr", "-1"]) == 2
    assert "learning rate" in capsys.readouterr().err
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    assert main(["train", "--precision", "w4a8_awq", "--data", str(empty)]) == 2
    assert "holds no text" in capsys.readouterr().err


def test_cli_prints_the_recovery_table(capsys, monkeypatch):
    from engine.cli import main
    from engine.training import run as training_run

    def fake_run(spec, store, progress):
        progress(0.5, "W4A8 AWQ (after QAT): step 1/2", log="W4A8 AWQ (after QAT): step 1/2  loss 3.1000")
        return training_run.TrainingReport(spec, 3.0, 2.0, 4.0, 2.5, 2, 1024, 0, False, training_run.run_dir(spec))

    monkeypatch.setattr(training_run, "run_training", fake_run)
    assert main(["train", "--mode", "qat", "--precision", "w4a8_awq", "--steps", "2", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "step 1/2  loss 3.1000" in out
    for row in ("Original model", "BF16 fine-tuned (baseline)", "W4A8 AWQ (PTQ)", "W4A8 AWQ (after QAT)"):
        assert row in out
    assert "Gap closed by training: 75.0%" in out  # (4.0 - 2.5) / (4.0 - 2.0)
