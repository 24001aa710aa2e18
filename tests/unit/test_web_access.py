"""The app and the job queue are untrusted input: they reach only what the administrator allows."""

import os

import pytest

from engine import pipeline
from engine.access import ALLOWED_DIRS_ENV, REMOTE_CODE_ENV, NotAllowed, WebPolicy
from engine.errors import SettingError
from engine.spec import DataSpec, ModelRef, Recipe, SweepSpec


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(ALLOWED_DIRS_ENV, raising=False)
    monkeypatch.delenv(REMOTE_CODE_ENV, raising=False)
    (tmp_path / "home" / "uploads").mkdir(parents=True)
    return tmp_path / "home"


@pytest.mark.bad_input
def test_default_allows_only_the_data_folder(home, tmp_path):
    policy = WebPolicy.from_env()
    inside = home / "uploads" / "calib.txt"
    inside.write_text("text")
    assert policy.check_path(inside, "data file") == inside.resolve()
    for outside in ("/etc/shadow", str(home / ".." / "elsewhere.txt"), "../../../../etc/passwd"):
        with pytest.raises(NotAllowed, match="outside the folders"):
            policy.check_path(outside, "data file")


@pytest.mark.bad_input
def test_a_symlink_out_of_the_allowed_folder_is_refused(home, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("s")
    link = home / "uploads" / "innocent.txt"
    os.symlink(secret, link)
    with pytest.raises(NotAllowed):
        WebPolicy.from_env().check_path(link, "data file")


@pytest.mark.bad_input
def test_the_refusal_does_not_tell_whether_a_path_exists(home):
    policy = WebPolicy.from_env()
    with pytest.raises(NotAllowed) as real:
        policy.check_path("/etc/passwd", "model folder")
    with pytest.raises(NotAllowed) as missing:
        policy.check_path("/etc/no-such-file-here", "model folder")
    assert str(real.value).replace("passwd", "X") == str(missing.value).replace("no-such-file-here", "X")


@pytest.mark.bad_input
def test_models_hub_ids_and_gguf_names(home):
    policy = WebPolicy.from_env()
    policy.check_model("bundled", None, False)
    policy.check_model("bundled-diffusion", None, False)
    policy.check_model("HuggingFaceTB/SmolLM2-360M", None, False)
    with pytest.raises(NotAllowed, match="file name inside"):
        policy.check_model("bundled", "../../../../etc/passwd", False)
    with pytest.raises(NotAllowed, match="trust_remote_code"):
        policy.check_model("org/model", None, True)
    with pytest.raises(NotAllowed, match="outside"):
        policy.check_model("/usr/lib", None, False)


@pytest.mark.bad_input
def test_the_administrator_widens_what_is_allowed(home, tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv(ALLOWED_DIRS_ENV, str(models))
    monkeypatch.setenv(REMOTE_CODE_ENV, "1")
    policy = WebPolicy.from_env()
    policy.check_model(str(models), None, True)
    monkeypatch.setenv(REMOTE_CODE_ENV, "maybe")
    with pytest.raises(SettingError):
        WebPolicy.from_env()
    monkeypatch.setenv(ALLOWED_DIRS_ENV, "relative/path")
    with pytest.raises(SettingError, match="absolute"):
        WebPolicy.from_env()


@pytest.mark.parametrize("spec", [
    SweepSpec(ModelRef("org/model", trust_remote_code=True), (Recipe("fp8"),)),
    SweepSpec(ModelRef(), (Recipe("fp8"),), DataSpec("/etc/shadow")),
    SweepSpec(ModelRef("/etc"), (Recipe("fp8"),)),
    SweepSpec(ModelRef("bundled", gguf_file="../../etc/passwd"), (Recipe("fp8"),)),
])
@pytest.mark.bad_input
def test_a_forged_job_row_is_refused_before_any_work(home, spec):
    with pytest.raises(NotAllowed):
        pipeline.run_sweep_job(pipeline.sweep_payload(spec), lambda *a: None)
    assert not (home / "tlab.db").exists()  # refused before the store was even opened


def test_evaluation_scratch_file_lives_in_the_data_folder_and_goes_away(home):
    from engine.evaluate import scratch_array

    arr = scratch_array((4, 8, 16))
    arr[:] = 1.0
    assert float(arr.sum()) == 4 * 8 * 16
    assert list((home / "tmp").iterdir()) == []  # unlinked once mapped; the space returns with the process
