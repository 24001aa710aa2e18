"""Bad input through the CLI: a clear error, exit status 2, and nothing written to the store."""

import json
import sqlite3

import pytest

from engine.cli import main
from engine.paths import tlab_home


def _result_count() -> int:
    db = tlab_home() / "tlab.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        return con.execute("select count(*) from results").fetchone()[0]


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("argv, expect", [
    (["--precisions", "fp9"], "Valid precision names: bf16, fp16, fp8, int8_sq, int4_awq, w4a8_awq, nvfp4"),
    (["--sparsity", "2:4"], "Valid sparsity names: none, magnitude, sparsegpt"),
    (["--precisions", "nvfp4", "--device", "cpu"], "needs an NVIDIA GPU"),
    (["--model", "/no/such/model/folder"], "does not exist"),
    (["--calib-size", "0"], "calib size must be a positive"),
    (["--calib-size", "-4"], "calib size must be a positive"),
    (["--eval-tokens", "0"], "eval tokens must be a positive"),
])
@pytest.mark.bad_input
def test_sweep_rejects_bad_input_without_partial_rows(capsys, argv, expect):
    code, out, err = _run(capsys, "sweep", *argv)
    assert code == 2
    assert expect in err
    assert "Traceback" not in err
    assert _result_count() == 0


@pytest.mark.bad_input
def test_pickle_only_model_folder(capsys, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    code, _, err = _run(capsys, "sweep", "--model", str(folder))
    assert code == 2 and "only pickled weights" in err
    assert _result_count() == 0


@pytest.mark.bad_input
def test_corrupt_store_is_reported_and_not_overwritten(capsys):
    home = tlab_home()
    home.mkdir(parents=True, exist_ok=True)
    db = home / "tlab.db"
    garbage = b"this is not a database" * 100
    db.write_bytes(garbage)
    code, _, err = _run(capsys, "results")
    assert code == 2
    assert str(db) in err
    assert db.read_bytes() == garbage


def test_results_on_empty_store(capsys):
    code, out, err = _run(capsys, "results", "--format", "json")
    assert code == 0 and json.loads(out) == []
    code, out, err = _run(capsys, "results")
    assert code == 0 and "tlab sweep" in err


BAD_WORKER_ARGS = [
    (["--store-url", "garbage"], "is not a database URL"),
    (["--store-url", "postgresql://u:secret@localhost:notaport/db"], "is not a database URL"),
    (["--poll", "-1"], "--poll must be between"),
    (["--poll", "nan"], "--poll must be between"),
]


@pytest.mark.parametrize("argv, expect", BAD_WORKER_ARGS)
@pytest.mark.bad_input
def test_worker_refuses_bad_settings_plainly(capsys, argv, expect):
    code, out, err = _run(capsys, "worker", "--once", *argv)
    assert code == 2 and expect in err and "Traceback" not in err
    assert "secret" not in err  # a password in a bad URL is never printed


@pytest.mark.bad_input
def test_threads_setting_beyond_the_cores_is_refused(monkeypatch):
    from engine.cpu_threads import choose_threads
    from engine.errors import SettingError

    with pytest.raises(SettingError, match="far more than the 2 CPU"):
        choose_threads(env={"TLAB_THREADS": "500"}, cores=2)
    assert choose_threads(env={"TLAB_THREADS": "3"}, cores=2)[0] == 3  # a choice, not a mistake


@pytest.mark.bad_input
def test_a_data_folder_below_a_file_is_a_setting_error(capsys, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TLAB_HOME", str(blocker / "home"))
    code, out, err = _run(capsys, "results")
    assert code == 2 and "cannot be created" in err and "set TLAB_HOME" in err
