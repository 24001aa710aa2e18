"""`tlab sweep --benchmark` on the bundled model: real deployment to CPU kernels, measured speed.

The workload is tiny (16 tokens in, 8 out, batch 1) to keep the default suite short; the speedup
itself may be refused when this machine is too noisy, and then the reason must be recorded.
"""

import json

import pytest

from engine.cli import main
from engine.runtimes.torch.kernels import int8_probe_exact
from tests.conftest import requires_bundled

pytestmark = requires_bundled


@pytest.fixture(scope="module")
def benchmarked(tmp_path_factory):
    import os

    home = tmp_path_factory.mktemp("bench-home")
    old = os.environ.get("TLAB_HOME")
    os.environ["TLAB_HOME"] = str(home)
    import torch

    threads_before = torch.get_num_threads()
    try:
        code = main(["sweep", "--precisions", "int8_sq,fp8", "--calib-size", "2", "--calib-seq-len", "64",
                     "--eval-tokens", "512", "--eval-seq-len", "256", "--benchmark", "--isl", "16",
                     "--osl", "8", "--batch-sizes", "1", "--format", "json"])
        assert code == 0
        assert torch.get_num_threads() == threads_before  # the job's thread choice does not leak
        assert main(["results", "--format", "json"]) == 0
        yield home
    finally:
        if old is None:
            os.environ.pop("TLAB_HOME", None)
        else:
            os.environ["TLAB_HOME"] = old


def test_measured_speed_with_provenance(benchmarked, capsys, monkeypatch):
    monkeypatch.setenv("TLAB_HOME", str(benchmarked))
    assert main(["results", "--format", "json"]) == 0
    rows = {r["precision"]: r for r in json.loads(capsys.readouterr().out)}
    int8_why = int8_probe_exact()
    if int8_why:  # a CPU without exact INT8 kernels (no AVX512-VNNI): INT8 keeps its accuracy and says why
        assert int8_why.rstrip(".") in rows["int8_sq"]["provenance_detail"]["speed_not_measured"]
        assert "speedup" not in rows["int8_sq"] and "decode_tokens_per_sec_bs1" not in rows["int8_sq"]
    for name in ("bf16",) if int8_why else ("bf16", "int8_sq"):
        r = rows[name]
        assert r["decode_tokens_per_sec_bs1"] > 0
        assert r["provenance"] == "measured"
        speed = r["provenance_detail"]["speed"]
        assert speed["kind"] == "measured" and speed["backend"] == "torch"
        assert speed["measurements"][0]["repeats"] >= 2
        assert speed["device"]["threads"] >= 1
    accuracy = rows["int8_sq"]["provenance_detail"]["accuracy"]
    assert accuracy["cpu_threads"] >= 1 and "thread(s)" in accuracy["cpu_threads_note"]
    int8 = rows["int8_sq"]
    if not int8_why:
        refused = int8["provenance_detail"]["speed"]["speedup_refused"]
        # Either a speedup against the baseline measured in the same run, or the reason it was withheld.
        assert ("speedup" in int8) != bool(refused)
        if "speedup" in int8:
            assert isinstance(int8["speedup"], float) and int8["speedup"] > 0
    assert "speedup" not in rows["bf16"] or rows["bf16"]["speedup"] == pytest.approx(1.0)
    assert rows["bf16"]["speed_compute_bits"] == 32  # the CPU baseline ran in float32, and says so


def test_unmeasurable_recipe_keeps_accuracy_and_says_why(benchmarked, capsys, monkeypatch):
    monkeypatch.setenv("TLAB_HOME", str(benchmarked))
    assert main(["results", "--format", "json"]) == 0
    fp8 = next(r for r in json.loads(capsys.readouterr().out) if r["precision"] == "fp8")
    assert fp8["perplexity"] > 0
    assert "speedup" not in fp8 and "speed" not in fp8["provenance_detail"]
    assert "FP8" in fp8["provenance_detail"]["speed_not_measured"]


def test_results_table_says_where_each_number_came_from(benchmarked, capsys, monkeypatch):
    """The default (table) output lists each provenance once, with the device in words and the
    reason a recipe has no speed here."""
    monkeypatch.setenv("TLAB_HOME", str(benchmarked))
    assert main(["results"]) == 0
    out = capsys.readouterr().out
    notes = out.split("Provenance:")[1]
    assert "speed: measured on cpu: " in notes and "{" not in notes  # no raw dicts
    assert "fp8/none: speed not measured" in notes and "FP8" in notes
    speed = next(line for line in notes.splitlines() if "speed: measured" in line)
    assert "torch, lean decode loop" in speed and "thread(s)" in speed
    assert notes.index("accuracy:") < notes.index("speed: measured")  # sources grouped, accuracy first
    assert "bf16/none batch" not in notes  # the baseline has no speedup of its own to refuse
