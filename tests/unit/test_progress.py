"""Progress never freezes: run-by-run fractions in the speed stage, the time left, CLI lines when
stderr is not a terminal, and job logs that tell the job's stages."""

import io
import os
import socket

import pytest

from engine.cli import _ProgressBar
from engine.jobs.child import ProgressReporter
from engine.runtimes.run_progress import PLANNED_SHARE, RunProgress
from engine.store import open_store
from engine.time_estimate import estimate_for_spec, format_remaining, job_estimate_s, remaining_seconds


def _recorder():
    seen: list[tuple[float, str]] = []
    return seen, lambda f, s: seen.append((f, s))


def _non_decreasing(values) -> bool:
    return all(b >= a for a, b in zip(values, values[1:]))


# --- run-by-run fractions -------------------------------------------------------------------------

def test_run_progress_fills_each_batch_slice_run_by_run():
    seen, cb = _recorder()
    p = RunProgress(cb)
    p.slice(0.0, 0.5, runs=4)
    for _ in range(4):
        p.ran().say("run")
    p.slice(0.5, 1.0, runs=2)
    p.say("next batch")
    p.ran().say("run")
    share = PLANNED_SHARE * 0.5  # the planned runs fill that much of a half-wide slice
    assert [f for f, _ in seen] == pytest.approx([share / 4, share / 2, 3 * share / 4, share, 0.5, 0.5 + share / 2])


def test_run_progress_keeps_moving_when_more_runs_are_added():
    seen, cb = _recorder()
    p = RunProgress(cb)
    p.slice(0.0, 1.0, runs=4)
    for _ in range(4):
        p.ran().say("run")
    planned_end = seen[-1][0]
    assert planned_end == pytest.approx(PLANNED_SHARE) and planned_end < 1.0
    p.plan(6).say("the runs were noisy: 6 more")  # they fill the same share of what is left
    for _ in range(6):
        p.ran().say("run")
    fractions = [f for f, _ in seen]
    assert _non_decreasing(fractions)
    extra = fractions[5:]  # after the message, at the planned end
    assert all(b > a for a, b in zip(fractions[4:], extra))  # every added run moves the bar
    assert extra[-1] == pytest.approx(PLANNED_SHARE + (1 - PLANNED_SHARE) * PLANNED_SHARE) and extra[-1] < 1.0
    p(0.2, "a late, lower report")  # a caller's own fraction cannot move it back either
    assert seen[-1][0] == pytest.approx(extra[-1])


def test_torch_compare_reports_fractions_inside_the_speed_stage():
    """A real (tiny) benchmark: every run moves the fraction; it never goes back."""
    from engine.runtimes.torch import TorchRuntime
    from engine.spec import Recipe, Workload
    from tests.helpers_quant import tiny_llama

    seen, cb = _recorder()
    rt = TorchRuntime(device="cpu", warmup=1, repeats=2, max_repeats=2)
    rt.compare([(tiny_llama(hidden=64, heads=2, kv_heads=1), Recipe("bf16"))], Workload(8, 3, (1, 2)), cb)
    fractions = [f for f, _ in seen]
    assert _non_decreasing(fractions) and fractions[-1] == 1.0
    inside = sorted({f for f in fractions if 0.0 < f < 1.0})
    # 1 warm-up + 2 timed runs per batch size, each run its own step forward.
    assert len(inside) >= 6, inside
    assert any("run 2" in s for _, s in seen) and any("warm-up" in s for _, s in seen)


# --- time left ------------------------------------------------------------------------------------

def test_remaining_says_nothing_before_anything_honest_can_be_said():
    assert remaining_seconds(0.0, 3.0, None) is None  # no estimate and no progress
    assert remaining_seconds(0.05, 30.0, None) is None  # too little seen to trust a rate
    assert remaining_seconds(0.5, 2.0, None) is None  # too soon
    assert remaining_seconds(0.0, 200.0, 100.0) is None  # the job outlived its estimate
    assert remaining_seconds(None, 10.0, 100.0) is None and remaining_seconds(0.5, None, 100.0) is None


def test_remaining_starts_from_the_estimate_and_moves_to_the_observed_rate():
    assert remaining_seconds(0.0, 10.0, 100.0) == pytest.approx(90.0)
    # Half done in 20 s: the observed rate says 20 s left, whatever the estimate said.
    assert remaining_seconds(0.5, 20.0, 100.0) == pytest.approx(20.0)
    assert remaining_seconds(0.8, 40.0, None) == pytest.approx(10.0)
    # Early on the two are blended: between the estimate's share of the work left and the observed rate.
    early = remaining_seconds(0.1, 5.0, 100.0)
    assert 45.0 < early < 90.0
    assert remaining_seconds(1.0, 50.0, 10.0) == 0.0


def test_remaining_is_worded_with_format_duration():
    assert format_remaining(240.0) == "about 4 min left"
    assert format_remaining(None) == "" and format_remaining(0.0) == ""


def test_job_estimate_only_for_readable_language_model_sweeps():
    from engine.pipeline import sweep_payload
    from engine.spec import DataSpec, Recipe, SweepSpec, Workload

    spec = SweepSpec(recipes=(Recipe("bf16"), Recipe("int8_sq"), Recipe("int4_awq")),
                     data=DataSpec(calib_size=4), workload=Workload(16, 8, (1,)))
    job = {"fn": "engine.pipeline:run_sweep_job", "payload": sweep_payload(spec)}
    est = job_estimate_s(job)
    assert est == pytest.approx(estimate_for_spec(spec.to_dict()).seconds) and est > 0
    fewer = SweepSpec(recipes=(Recipe("bf16"), Recipe("int8_sq")), data=DataSpec(calib_size=4),
                      workload=Workload(16, 8, (1,)))
    assert estimate_for_spec(fewer.to_dict()).seconds < est  # the baseline is not counted as a recipe
    assert job_estimate_s({"fn": "tests.helpers_jobs:sleepy", "payload": {}}) is None
    broken = {"fn": "engine.pipeline:run_sweep_job", "payload": {"spec": {"recipes": [], "data": {"calib_size": "x"}}}}
    assert job_estimate_s(broken) is None


# --- the CLI's progress ---------------------------------------------------------------------------

class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_cli_prints_plain_lines_when_stderr_is_not_a_terminal():
    out, clock = io.StringIO(), _Clock()
    with _ProgressBar(estimate_s=120.0, stream=out, clock=clock) as bar:  # StringIO is not a TTY
        bar.update(0.0, "loading the model")
        clock.t += 1
        bar.update(0.02, "loading the model")  # same stage, 1 s later: no line
        clock.t += 9
        bar.update(0.35, "calibrating INT8 SmoothQuant")
        clock.t += 1
        bar.update(0.36, "calibrating INT8 SmoothQuant")  # same stage again: quiet
        clock.t += _ProgressBar.PLAIN_EVERY_S
        bar.update(0.5, "calibrating INT8 SmoothQuant")  # a while later: a line even on the same stage
        bar.update(0.4, "evaluating INT8 SmoothQuant")  # never goes back
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "[  0%] loading the model (about 2 min left)"
    assert lines[1].startswith("[ 35%] calibrating INT8 SmoothQuant (about ") and lines[1].endswith(" left)")
    assert lines[2].startswith("[ 50%] calibrating INT8 SmoothQuant")
    assert lines[3].startswith("[ 50%] evaluating INT8 SmoothQuant")
    assert len(lines) == 4


def test_cli_keeps_the_bar_on_a_terminal():
    out, clock = io.StringIO(), _Clock()
    with _ProgressBar(estimate_s=600.0, stream=out, tty=True, clock=clock) as bar:
        bar.update(0.1, "calibrating FP8")
    assert "\r" in out.getvalue() and "calibrating FP8" in out.getvalue() and "min left" in out.getvalue()


def test_cli_progress_lines_through_a_pipe(tmp_path):
    """`tlab`'s own progress object, in a process whose stderr is a pipe."""
    import subprocess
    import sys

    code = ("from engine.cli import _ProgressBar\n"
            "with _ProgressBar(None) as bar:\n"
            "    bar.update(0.0, 'loading the model')\n"
            "    bar.update(0.5, 'evaluating')\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["[  0%] loading the model", "[ 50%] evaluating"]


# --- job logs -------------------------------------------------------------------------------------

def test_job_log_holds_its_stages(tmp_path, monkeypatch):
    monkeypatch.setenv("TLAB_JOB_MODULES", "tests")
    store = open_store()
    try:
        job_id = store.enqueue("tests.helpers_jobs:sleepy", {}, "stages")
        store.claim_next("test-worker", os.getpid(), socket.gethostname())
        progress = ProgressReporter(store, job_id)
        progress(0.0, "loading the model")
        progress(0.1, "loading the model")  # the same stage is logged once
        progress(0.35, "calibrating INT8 SmoothQuant")
        progress(0.5, "evaluating", "a line of its own")
        progress.flush()
        log = store.get_job(job_id)["log"].split("\n")
    finally:
        store.close()
    assert log == ["[  0%] loading the model", "[ 35%] calibrating INT8 SmoothQuant", "[ 50%] evaluating",
                   "a line of its own"]


# --- a whole sweep with a benchmark, and a job that reuses it --------------------------------------
# A tiny random Llama saved as a local safetensors folder with a byte-level tokenizer: the real
# pipeline (load, calibrate INT8 SmoothQuant, evaluate, deploy, time) in seconds, not minutes.

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWEEP_ARGS = ["--precisions", "int8_sq", "--calib-size", "2", "--calib-seq-len", "32", "--eval-tokens", "128",
              "--eval-seq-len", "64", "--benchmark", "--isl", "8", "--osl", "3", "--batch-sizes", "1",
              "--device", "cpu", "--experiment", "progress"]


def _tiny_model_folder(folder):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<eos>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, vocab_size=len(vocab), tie_word_embeddings=True,
                      max_position_embeddings=256, eos_token_id=vocab["<eos>"])
    LlamaForCausalLM(cfg).save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """`tlab sweep --benchmark` on the tiny model with stderr a StringIO (not a terminal); every
    (fraction, stage) the CLI's progress received is recorded."""
    import contextlib

    from engine import cli

    home = tmp_path_factory.mktemp("progress-home")
    folder = str(_tiny_model_folder(home / "models" / "tiny-llama"))  # under TLAB_HOME: jobs may read it
    seen: list[tuple[float, str]] = []
    update = cli._ProgressBar.update
    err, out = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLAB_HOME", str(home))
        mp.setattr(cli._ProgressBar, "update", lambda self, f, s: (seen.append((f, s)), update(self, f, s)))
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            assert cli.main(["sweep", "--model", folder, *SWEEP_ARGS, "--format", "json"]) == 0
        spec_out = io.StringIO()
        with contextlib.redirect_stdout(spec_out):
            assert cli.main(["sweep", "--model", folder, *SWEEP_ARGS, "--print-spec"]) == 0
    return {"home": home, "seen": seen, "stderr": err.getvalue(), "spec": spec_out.getvalue()}


def test_sweep_fractions_move_through_the_speed_stage(swept):
    fractions = [f for f, _ in swept["seen"]]
    assert _non_decreasing(fractions) and fractions[-1] == 1.0
    runs = [(f, s) for f, s in swept["seen"] if " run " in s and "decode tok/s" in s]
    assert runs, swept["seen"]
    inside = {f for f, _ in runs if 0.8 < f < 1.0}  # the speed stage is 0.8-1.0 of a sweep with a benchmark
    assert len(inside) >= 5, runs  # 2 models x 5 rounds, each timed run a step forward


def test_sweep_prints_plain_progress_lines_without_a_terminal(swept):
    import re

    text = swept["stderr"]
    ours = [line for line in text.split("\n") if re.match(r"^\[\s*\d+%\] ", line)]
    assert ours[0].startswith("[  0%] loading the model")
    assert any("calibrating INT8 SmoothQuant" in line for line in ours)
    assert any("FP32 baseline run 1" in line for line in ours)
    assert any(line.endswith(" left)") for line in ours)  # the time left, once something can be said
    assert not any("\r" in line for line in ours) and "\r[" not in text


def test_job_that_reuses_everything_says_so_in_its_log(swept, monkeypatch):
    from engine.jobs.worker import run_worker

    monkeypatch.setenv("TLAB_HOME", str(swept["home"]))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    store = open_store()
    try:
        import json

        job_id = store.enqueue("engine.pipeline:run_sweep_job", {"spec": json.loads(swept["spec"])}, "again")
        assert run_worker(store.url, once=True, poll_s=0.05, heartbeat_s=0.2) == 1
        job = store.get_job(job_id)
    finally:
        store.close()
    assert job["status"] == "done", job["error"]
    log = job["log"].split("\n")
    assert "[100%] reused all 2 result(s) already in the store" in log, log
    assert log[-1] == "done: 2 result(s)"


@pytest.mark.parametrize("recipe", [("bf16", "sparsegpt"), ("int8_sq", "sparsegpt"), ("int8_sq", "magnitude")])
def test_pruning_reports_fractions_before_calibration(tmp_path, recipe):
    """2:4 pruning reports its own progress (SparseGPT per statistics batch), then calibration continues
    from where pruning ended: never backwards, and the recipe ends at 1.0 when quantization follows."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.quantize import apply_recipe
    from engine.spec import Recipe

    model = AutoModelForCausalLM.from_pretrained(_tiny_model_folder(tmp_path / "tiny"))
    calib = [torch.randint(0, 200, (1, 16)) for _ in range(8)]
    seen, record = _recorder()
    apply_recipe(model, Recipe(*recipe), calib, record)
    fractions = [f for f, _ in seen]
    assert _non_decreasing(fractions) and fractions[-1] == 1.0
    pruning = [f for f, s in seen if s.startswith("pruning 2:4")]
    assert pruning and max(pruning) == (0.5 if recipe[0] != "bf16" else 1.0)
    if recipe[1] == "sparsegpt":  # one report per statistics batch, strictly inside the pruning share
        assert len({f for f in pruning if 0 < f < max(pruning)}) >= 2
    weight = model.model.layers[0].mlp.up_proj.weight
    groups = (weight.detach().reshape(-1, 4) == 0).sum(dim=1)
    assert bool((groups >= 2).all())  # still 2:4 after calibration
