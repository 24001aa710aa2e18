"""The Jobs page shows each state of a job, cancels, and never leaves an orphaned job spinning.
Jobs run in a real worker with real child processes (tests.helpers_jobs functions)."""

import socket
import subprocess
import sys

from engine.jobs.worker import run_worker
from tests.app.conftest import open_page


def _all_text(at) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error]
    parts += [w.value for w in at.warning] + [c.value for c in at.code]
    return "\n".join(str(p) for p in parts)


def test_done_and_failed_jobs_show_their_outcome_in_plain_words(app_home):
    done = app_home.enqueue("tests.helpers_jobs:sleepy", {"steps": 2, "step_s": 0.01}, "a quick job")
    failed = app_home.enqueue("tests.helpers_jobs:raise_tlab_error", {}, "a job that fails")
    assert run_worker(app_home.url, once=True, poll_s=0.05, heartbeat_s=0.2) == 2
    at = open_page("jobs")
    assert not at.exception
    text = _all_text(at)
    assert f"#{done} a quick job**: done" in text
    assert f"#{failed} a job that fails**: failed" in text
    assert any("calibration file is empty" in e.value for e in at.error)


def test_running_job_shows_progress_stage_elapsed_and_log(app_home):
    job_id = app_home.enqueue("tests.helpers_jobs:sleepy", {}, "long job")
    import os

    app_home.claim_next("test-worker", os.getpid(), socket.gethostname())  # a live pid: this test
    app_home.update_progress(job_id, 0.4, "calibrating FP8", ["loading model", "calibrating 2 of 5"])
    at = open_page("jobs")
    assert not at.exception
    bar = at.get("progress")[0]
    assert bar.value == 40 and "calibrating FP8" in bar.proto.text
    text = _all_text(at)
    assert "Running for" in text and "calibrating 2 of 5" in text
    assert at.button(key=f"cancel_{job_id}")


def test_cancel_a_queued_job(app_home):
    job_id = app_home.enqueue("tests.helpers_jobs:sleepy", {}, "to cancel")
    at = open_page("jobs")
    at.button(key=f"cancel_{job_id}").click().run()
    assert not at.exception
    assert app_home.get_job(job_id)["status"] == "cancelled"


def test_cancel_a_running_job_flags_it_for_its_worker(app_home):
    import os

    job_id = app_home.enqueue("tests.helpers_jobs:sleepy", {}, "running, to cancel")
    app_home.claim_next("test-worker", os.getpid(), socket.gethostname())
    app_home.heartbeat("test-worker", job_id)
    at = open_page("jobs")
    at.button(key=f"cancel_{job_id}").click().run()
    job = app_home.get_job(job_id)
    assert job["cancel_requested"] and job["status"] == "running"  # the worker stops it and records it


def test_job_left_running_by_a_dead_worker_is_marked_interrupted(app_home):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job_id = app_home.enqueue("tests.helpers_jobs:sleepy", {}, "orphan")
    app_home.claim_next("gone-worker", dead.pid, socket.gethostname())
    at = open_page("jobs")
    assert not at.exception
    job = app_home.get_job(job_id)
    assert job["status"] == "interrupted"
    assert "stopped before the job finished" in _all_text(at)


def test_queued_jobs_without_a_worker_say_how_to_start_one(app_home):
    app_home.enqueue("tests.helpers_jobs:sleepy", {}, "waiting")
    at = open_page("jobs")
    assert any("No worker is running" in w.value for w in at.warning)
    assert at.sidebar.button(key="sidebar_start_worker")


def test_jobs_survive_a_new_session(app_home):
    """A browser reload is a new session: the list comes from the store, not the session."""
    job_id = app_home.enqueue("tests.helpers_jobs:sleepy", {}, "persistent")
    first = open_page("jobs")
    second = open_page("jobs")
    assert f"#{job_id} persistent" in _all_text(first) and f"#{job_id} persistent" in _all_text(second)


def test_a_failed_job_runs_again_with_one_click(app_home):
    failed = app_home.enqueue("tests.helpers_jobs:raise_tlab_error", {"why": 1}, "a job that fails")
    assert run_worker(app_home.url, once=True, poll_s=0.05, heartbeat_s=0.2) == 1
    at = open_page("jobs")
    assert not at.exception
    at.button(key=f"rerun_{failed}").click().run()
    assert not at.exception
    again = [j for j in app_home.list_jobs() if j["id"] != failed]
    assert len(again) == 1 and again[0]["status"] == "queued"
    assert again[0]["fn"] == "tests.helpers_jobs:raise_tlab_error" and again[0]["payload"] == {"why": 1}
    assert again[0]["title"] == "a job that fails"
