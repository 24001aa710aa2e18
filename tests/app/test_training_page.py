"""The Training page under AppTest: the form's defaults are TrainingSpec's, a bad value is shown and queues
nothing, Start queues the training job; a run's live loss curves come from a real (tiny) training run's
loss.jsonl, and Cancel / Resume follow the job's status and who started it."""

import copy

import pytest

from app import training_form as tf
from engine.store.job_functions import ENGINE_JOB_FUNCTIONS, check_job_fn
from engine.training import run as training_run
from engine.training.spec import TrainingSpec
from tests.app.conftest import MAIN, TEAM_PASSWORD, open_page, plotly_figures, trace_values

PASSWORD = TEAM_PASSWORD
TINY = dict(mode="qat", precision="int8_sq", steps=3, learning_rate=1e-3, seq_len=32, batch_size=2, warmup=1,
            eval_tokens=128, calib_size=2, checkpoint_every=2, device="cpu")


def _buttons(at) -> set[str]:
    return {b.key for b in at.button if b.key}


def _texts(at) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error]
    parts += [w.value for w in at.warning] + [s.value for s in at.success]
    return "\n".join(str(p) for p in parts)


# --- the form ------------------------------------------------------------------------------------------
def test_the_form_starts_from_the_training_spec_defaults(app_home):
    at = open_page("training")
    assert not at.exception and [t.value for t in at.title][-1] == "Training"
    for key, *_ in tf.MAIN_FIELDS + tf.ADVANCED_FIELDS:
        assert at.number_input(key=f"train_{key}").value == getattr(TrainingSpec(precision="fp8"), key), key
    assert at.number_input(key="train_lr").value == TrainingSpec(precision="fp8").learning_rate
    assert at.radio(key="train_mode").value == "qat"
    assert at.selectbox(key="train_precision").value == tf.DEFAULT_PRECISION
    assert "nvfp4" not in at.selectbox(key="train_precision").options  # cannot calibrate without CUDA
    assert not at.error and not at.button(key="train_start").disabled
    assert any("No training runs yet" in i.value for i in at.info)


def test_sparse_fine_tuning_starts_from_its_own_defaults_and_queues_them(app_home):
    """Sparse fine-tuning has a bigger gap to close: the form switches to its steps, LR and warm-up (and back),
    and Start queues what is shown."""
    from engine.training.spec import MODE_DEFAULTS

    at = open_page("training")
    at.radio(key="train_mode").set_value("sparse_ft").run()
    assert not at.exception and not at.error
    for name, value in MODE_DEFAULTS["sparse_ft"].items():
        assert at.number_input(key=tf.field_key(name, "sparse_ft")).value == value, name
    assert at.number_input(key="train_seq_len").value == tf.default("seq_len")
    at.radio(key="train_mode").set_value("qat").run()
    assert at.number_input(key="train_steps").value == tf.default("steps")
    at.radio(key="train_mode").set_value("sparse_ft").run()
    at.button(key="train_start").click().run()
    (job,) = app_home.list_jobs()
    queued = TrainingSpec.from_dict(job["payload"]["spec"])
    assert (queued.mode, queued.steps, queued.learning_rate, queued.warmup) == (
        "sparse_ft", 100, 2e-4, 10)


def test_a_learning_rate_of_zero_is_shown_and_queues_nothing(app_home):
    at = open_page("training")
    at.number_input(key="train_lr").set_value(0.0).run()
    assert not at.exception
    assert any("learning rate must be a number above 0" in e.value for e in at.error)
    assert at.button(key="train_start").disabled
    at.number_input(key="train_steps").set_value(0).run()  # the field's own range, named
    assert any(e.value.startswith("Steps: 0 is out of range") for e in at.error)
    assert app_home.list_jobs() == []


def test_warm_up_as_long_as_the_run_is_refused_with_what_to_do(app_home):
    at = open_page("training")
    at.number_input(key="train_steps").set_value(3).run()
    assert any("Warm-up (4 steps) must be shorter than the run (3 steps)" in e.value for e in at.error)
    assert at.button(key="train_start").disabled


def test_start_queues_the_training_job_with_its_spec(app_home):
    at = open_page("training")
    at.selectbox(key="train_precision").set_value("fp8")
    for key, value in (("steps", 3), ("seq_len", 32), ("batch_size", 1), ("warmup", 1), ("eval_tokens", 64),
                       ("calib_size", 2)):
        at.number_input(key=f"train_{key}").set_value(value)
    at.number_input(key="train_lr").set_value(1e-4).run()
    assert not at.error
    at.button(key="train_start").click().run()
    assert not at.exception
    jobs = app_home.list_jobs()
    assert len(jobs) == 1
    job = jobs[0]
    expected = TrainingSpec(mode="qat", precision="fp8", steps=3, seq_len=32, batch_size=1, warmup=1,
                            eval_tokens=64, calib_size=2, learning_rate=1e-4)
    assert job["fn"] == tf.TRAINING_FN and job["fn"] in ENGINE_JOB_FUNCTIONS and check_job_fn(job["fn"])
    assert job["payload"] == training_run.training_payload(expected) and job["owner"] == "local"
    assert any(f"Queued job #{job['id']}" in s.value for s in at.success)
    assert at.selectbox(key="train_job").value == job["id"]  # the live view shows the new run
    assert f"train_cancel_{job['id']}" in _buttons(at)
    at.button(key="train_start").click().run()  # the same run again while it waits: not a second job
    assert len(app_home.list_jobs()) == 1
    assert any(f"Job #{job['id']} is already training this run" in w.value for w in at.warning)


def test_sparse_fine_tuning_and_the_baseline_take_their_own_choices(app_home):
    at = open_page("training")
    at.radio(key="train_mode").set_value("sparse_ft").run()
    assert at.selectbox(key="train_sparsity").value == tf.DEFAULT_SPARSITY
    at.button(key="train_start").click().run()
    spec = app_home.list_jobs()[0]["payload"]["spec"]
    assert (spec["mode"], spec["sparsity"], spec["precision"]) == ("sparse_ft", "sparsegpt", None)
    at.radio(key="train_mode").set_value("finetune").run()
    assert not any(s.key in ("train_precision", "train_sparsity") for s in at.selectbox)
    at.button(key="train_start").click().run()
    spec = app_home.list_jobs()[0]["payload"]["spec"]
    assert (spec["mode"], spec["sparsity"], spec["precision"]) == ("finetune", None, None)


def test_an_uploaded_text_is_checked_saved_under_the_data_folder_and_trained_on(app_home):
    text = "\n\n".join(f"Paragraph {i} says something different about topic number {i}." for i in range(12))
    at = open_page("training", timeout=240)  # the tokenizer is converted from the GGUF once per data folder
    at.radio(key="train_data_kind").set_value("upload").run()
    assert any("Upload a training text file" in e.value for e in at.error) and at.button(key="train_start").disabled
    at.file_uploader(key="train_upload").set_value(("notes.txt", text.encode(), "text/plain")).run()
    assert not at.exception
    assert any(e.value.startswith("The text's held-out part holds 28 tokens, fewer than one evaluation window "
                                  "of 128") for e in at.error)  # counted with the bundled model's tokenizer
    at.number_input(key="train_seq_len").set_value(16).run()
    assert not at.error, [e.value for e in at.error]
    at.button(key="train_start").click().run()
    source = app_home.list_jobs()[0]["payload"]["spec"]["data"]
    from engine.paths import tlab_home

    assert source.startswith(str(tlab_home() / "uploads")) and open(source).read() == text


# --- pure helpers ----------------------------------------------------------------------------------------
def test_size_problems_name_what_the_text_lacks():
    assert tf.size_problems(1000, 500, 128, 4096) == []
    short = tf.size_problems(100, 500, 128, 4096)
    assert len(short) == 1 and "holds 100 tokens" in short[0] and "Sequence length" in short[0]
    thin = tf.size_problems(1000, 20, 32, 64)
    assert len(thin) == 1 and "fewer than one evaluation window of 32" in thin[0]


def test_the_loss_chart_has_one_named_line_per_stage_and_skips_cut_lines():
    curves = {"BF16 (fine-tuned)": [{"step": 1, "loss": 5.0}, {"step": 2, "loss": 4.5}],
              "FP8 (after QAT)": [{"step": 1, "loss": 6.0}, {"step": 2}]}  # a line cut short by a kill
    fig = tf.loss_figure(curves)
    assert [t.name for t in fig.data] == list(curves) and fig.layout.showlegend
    assert list(fig.data[0].y) == [5.0, 4.5] and list(fig.data[1].x) == [1]
    lone = tf.loss_figure({"BF16 (fine-tuned)": curves["BF16 (fine-tuned)"], "FP8 (after QAT)": []})
    assert [t.name for t in lone.data] == ["BF16 (fine-tuned)"] and lone.layout.showlegend


def test_the_figures_name_each_model_for_the_mode():
    metrics = {"validation_loss_original": 4.6, "validation_loss_finetuned_baseline": 4.5,
               "validation_loss_before": 5.0, "validation_loss_after": 4.9, "gap_closed_pct": 20.0}
    qat = tf.figures_frame(metrics, TrainingSpec(**TINY))
    assert list(qat["Model"]) == ["Original model", "Fine-tuned baseline (BF16)", "INT8 SmoothQuant (PTQ)",
                                  "INT8 SmoothQuant (after QAT)"]
    assert list(qat["Validation loss (nats/token)"]) == [4.6, 4.5, 5.0, 4.9]
    finetune = tf.figures_frame(metrics, TrainingSpec(**{**TINY, "mode": "finetune", "precision": None}))
    assert list(finetune["Model"]) == ["Original model", "Fine-tuned baseline (BF16)"]
    assert "20.0%" in tf.gap_text(metrics) and tf.gap_text({"validation_loss_after": 4.9}) is None


def test_a_run_without_checkpoints_starts_from_step_zero(app_home):
    assert tf.resume_point(TrainingSpec(**TINY)) == "No checkpoint was saved yet: it starts again from step 0."


# --- a real tiny run ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def loader():
    pytest.importorskip("modelopt.torch.quantization")
    torch = pytest.importorskip("torch")
    from engine.models.loader import LoadedModel
    from tests.helpers_quant import VOCAB, tiny_llama

    class CharTokenizer:
        def __call__(self, text, return_tensors="pt"):
            class Out:
                input_ids = torch.tensor([[ord(c) % VOCAB for c in text]])
            return Out()

    tiny = tiny_llama(hidden=64, heads=2, kv_heads=1)
    return lambda ref, device: LoadedModel(copy.deepcopy(tiny), CharTokenizer(), "tiny-llama", None)


def _stopped_then_finished(store, loader):
    """A QAT run stopped at its second QAT step (as a cancelled job), then resumed to the end (a done job)."""
    spec = TrainingSpec(**TINY)
    calls = []
    stopped = training_run.run_training(spec, store, on_step=lambda info: calls.append(info) or len(calls) < 5,
                                        load=loader)
    assert stopped.stopped and stopped.steps == 2
    fn, payload, title = tf.training_job(spec)
    cancelled = store.enqueue(fn, payload, title, owner="alice")
    store.request_cancel(cancelled)
    return spec, cancelled


def test_a_stopped_run_shows_its_curves_and_resumes_from_its_checkpoint(app_home, loader):
    spec, cancelled = _stopped_then_finished(app_home, loader)
    at = open_page("training")
    assert not at.exception
    assert at.selectbox(key="train_job").value == cancelled
    figures = plotly_figures(at)
    assert len(figures) == 1
    traces = figures[0]["data"]
    assert [t["name"] for t in traces] == ["BF16 (fine-tuned)", "INT8 SmoothQuant (after QAT)"]
    assert trace_values(traces[0]["x"]) == [1, 2, 3] and trace_values(traces[1]["x"]) == [1, 2]
    logged = training_run.loss_curves(spec)["INT8 SmoothQuant (after QAT)"]
    assert trace_values(traces[1]["y"]) == pytest.approx([r["loss"] for r in logged])
    text = _texts(at)
    assert "INT8 SmoothQuant (after QAT) resumes at step 2 of 3 (checkpoint step-000002)" in text
    assert f"train_resume_{cancelled}" in _buttons(at) and f"train_cancel_{cancelled}" not in _buttons(at)

    at.button(key=f"train_resume_{cancelled}").click().run()
    again = app_home.list_jobs()[0]
    assert again["id"] != cancelled and again["payload"] == app_home.get_job(cancelled)["payload"]
    assert at.selectbox(key="train_job").value == again["id"]

    # the worker's run of that job: it resumes at step 2 and finishes, storing the figures
    app_home.claim_next("test-worker")
    report = training_run.run_training(spec, app_home, load=loader)
    assert report.resumed_from == 2 and not report.stopped
    app_home.finish(again["id"], "done", result_ids=[spec.baseline().id, spec.id])
    at.run()
    assert not at.exception
    frame = at.table[0].value
    losses = dict(zip(frame.index, frame["Validation loss (nats/token)"]))
    assert losses["INT8 SmoothQuant (after QAT)"] == pytest.approx(report.after_loss)
    assert losses["INT8 SmoothQuant (PTQ)"] == pytest.approx(report.before_loss)
    assert losses["Fine-tuned baseline (BF16)"] == pytest.approx(report.finetuned_loss)
    assert losses["Original model"] == pytest.approx(report.baseline_loss)
    if report.gap_closed_pct is not None:
        assert f"closed {report.gap_closed_pct:.1f}% of the gap" in _texts(at)
    else:  # PTQ was no worse than the fine-tuned baseline: no gap to close, and no share is claimed
        assert "of the gap" not in _texts(at)
    assert trace_values(plotly_figures(at)[0]["data"][1]["x"]) == [1, 2, 3]
    assert f"train_resume_{again['id']}" not in _buttons(at)


def test_a_running_run_shows_its_progress_time_left_and_cancel(app_home):
    import os
    import socket

    spec = TrainingSpec(**TINY)
    job_id = app_home.enqueue(*tf.training_job(spec))
    app_home.claim_next("test-worker", os.getpid(), socket.gethostname())
    app_home.heartbeat("test-worker", job_id)
    app_home.update_progress(job_id, 0.5, "INT8 SmoothQuant (after QAT): step 1/3, about 4 s left")
    at = open_page("training")
    bar = at.get("progress")[0]
    assert bar.value == 50 and "step 1/3, about 4 s left" in bar.proto.text
    assert "The loss curve appears after the first training step." in _texts(at)
    at.button(key=f"train_cancel_{job_id}").click().run()
    assert app_home.get_job(job_id)["cancel_requested"]


# --- who may cancel and resume ---------------------------------------------------------------------------
def _signed_in_on_training(name: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=60).run()
    at.text_input(key="sign_in_name").input(name)
    at.text_input(key="sign_in_password").input(PASSWORD)
    at.button[0].click().run()
    at.switch_page("../pages/training.py").run()
    return at


def test_only_the_owner_or_an_administrator_cancels_or_resumes(team):
    fn, payload, title = tf.training_job(TrainingSpec(**TINY))
    bobs_stopped = team.enqueue(fn, payload, title, owner="bob")
    team.request_cancel(bobs_stopped)
    bobs_queued = team.enqueue(fn, payload, title, owner="bob")
    alice = _signed_in_on_training("alice")
    assert not alice.exception and alice.selectbox(key="train_job").value == bobs_queued
    assert f"train_cancel_{bobs_queued}" not in _buttons(alice)
    assert "Started by bob" in _texts(alice)
    alice.selectbox(key="train_job").set_value(bobs_stopped).run()
    assert f"train_resume_{bobs_stopped}" not in _buttons(alice)

    carol = _signed_in_on_training("carol")
    assert f"train_cancel_{bobs_queued}" in _buttons(carol)
    carol.button(key=f"train_cancel_{bobs_queued}").click().run()
    assert team.get_job(bobs_queued)["status"] == "cancelled"
    carol.selectbox(key="train_job").set_value(bobs_stopped).run()
    carol.button(key=f"train_resume_{bobs_stopped}").click().run()
    newest = team.list_jobs(limit=1)[0]
    assert newest["owner"] == "carol" and newest["payload"] == payload and newest["status"] == "queued"
