"""Job queue and worker, with real child processes and a real SQLite store in a temporary TLAB_HOME."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.errors import TlabError
from engine.system import pid_alive
from engine.jobs.worker import run_worker, start_worker_process, worker_running
from engine.store import open_store
from engine.store.base import LOG_MAX_LINES

REPO = Path(__file__).resolve().parents[2]
FAST = {"poll_s": 0.05, "heartbeat_s": 0.2}


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("TLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TLAB_STORE_URL", raising=False)
    monkeypatch.setenv("TLAB_JOB_MODULES", "tests")
    # Child processes import tests.helpers_jobs from the repository.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    s = open_store()
    yield s
    s.close()


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def worker_thread(store):
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, kwargs={"store_url": store.url, "stop_event": stop, **FAST})
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive()


def running_with_pid(store, job_id):
    job = store.get_job(job_id)
    return job if job["status"] == "running" and job["pid"] else None


def test_enqueue_checks_function_names(store):
    with pytest.raises(TlabError, match="TLAB_JOB_MODULES"):
        store.enqueue("os:system", {}, "no")
    with pytest.raises(TlabError, match="package.module:function"):
        store.enqueue("not a function", {}, "no")
    with pytest.raises(TlabError, match="JSON"):
        store.enqueue("tests.helpers_jobs:sleepy", {"x": object()}, "no")
    job_id = store.enqueue("engine.pipeline:run_sweep_job", {"a": 1}, "allowed by default")
    job = store.get_job(job_id)
    assert job["status"] == "queued" and job["payload"] == {"a": 1} and job["progress"] == 0.0


def test_job_runs_with_progress_log_and_results(store):
    record = {"id": "abc123", "model": "bundled", "precision": "fp8", "sparsity": "none", "kv_cache": "auto",
              "metrics": {"perplexity": 10.0},
              "provenance": {"accuracy": {"kind": "measured", "device": "cpu", "engine": "torch"}}}
    sleepy = store.enqueue("tests.helpers_jobs:sleepy", {"steps": 4, "result_ids": ["x1"]}, "sleepy")
    saver = store.enqueue("tests.helpers_jobs:save_one_result", {"record": record}, "saver")
    assert run_worker(store.url, once=True, **FAST) == 2
    job = store.get_job(sleepy)
    assert job["status"] == "done" and job["progress"] == 1.0 and job["result_ids"] == ["x1"]
    assert "working on step 1" in job["log"] and "all steps done" in job["log"]
    assert job["finished_at"] >= job["started_at"] >= job["created_at"]
    assert store.get_job(saver)["result_ids"] == ["abc123"]
    assert store.get_result("abc123").metrics == {"perplexity": 10.0}


def test_crashing_jobs_fail_in_plain_words_and_others_finish(store):
    exit3 = store.enqueue("tests.helpers_jobs:exit_hard", {}, "exit 3")
    segv = store.enqueue("tests.helpers_jobs:segfault", {}, "segfault")
    user = store.enqueue("tests.helpers_jobs:raise_tlab_error", {}, "user error")
    bug = store.enqueue("tests.helpers_jobs:raise_value_error", {}, "bug")
    fine = store.enqueue("tests.helpers_jobs:sleepy", {"steps": 2}, "fine")
    assert run_worker(store.url, once=True, **FAST) == 5
    jobs = {j["id"]: j for j in store.list_jobs()}
    assert jobs[exit3]["status"] == "failed" and "exited with code 3" in jobs[exit3]["error"]
    assert "exiting with code 3" in jobs[exit3]["log"]
    assert jobs[segv]["status"] == "failed" and "crashed (SIGSEGV" in jobs[segv]["error"]
    assert "Fatal Python error" in jobs[segv]["log"]  # faulthandler's stack made it into the log tail
    assert jobs[user]["status"] == "failed"
    assert jobs[user]["error"] == "The calibration file is empty. Choose a file with at least one line of text."
    assert jobs[bug]["status"] == "failed" and jobs[bug]["error"] == "ValueError: boom in the middle"
    assert "Traceback" in jobs[bug]["log"] and "raise_value_error" in jobs[bug]["log"]
    assert jobs[fine]["status"] == "done"
    assert (Path(os.environ["TLAB_HOME"]) / "jobs" / f"{segv}.log").exists()


def test_cancel_queued_job(store):
    job_id = store.enqueue("tests.helpers_jobs:sleepy", {}, "never runs")
    assert store.request_cancel(job_id) == "cancelled"
    assert run_worker(store.url, once=True, **FAST) == 0
    assert store.get_job(job_id)["status"] == "cancelled"
    assert store.request_cancel(job_id) == "cancelled" and store.request_cancel(999) is None


def test_cancel_running_job_kills_its_process(store):
    with worker_thread(store):
        job_id = store.enqueue("tests.helpers_jobs:sleepy", {"steps": 400, "step_s": 0.05}, "long")
        pid = wait_for(lambda: running_with_pid(store, job_id), what="job to start")["pid"]
        assert pid_alive(pid)
        assert store.request_cancel(job_id) == "running"
        job = wait_for(lambda: (j := store.get_job(job_id))["status"] == "cancelled" and j, what="cancel")
        assert not pid_alive(pid) and "Cancelled" in job["error"]
        after = store.enqueue("tests.helpers_jobs:sleepy", {"steps": 1}, "after")  # the worker goes on
        wait_for(lambda: store.get_job(after)["status"] == "done", what="next job")


def test_killed_worker_leaves_job_interrupted(store):
    env = {**os.environ, "TLAB_STORE_URL": store.url}
    worker = subprocess.Popen([sys.executable, "-m", "engine.jobs.worker", "--poll", "0.05"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        job_id = store.enqueue("tests.helpers_jobs:sleepy", {"steps": 400, "step_s": 0.05}, "long")
        child = wait_for(lambda: running_with_pid(store, job_id), what="job to start")["pid"]
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        wait_for(lambda: not pid_alive(child), what="orphaned job process to stop")
    finally:
        if worker.poll() is None:
            worker.kill()
    assert store.get_job(job_id)["status"] == "running"  # nobody has noticed yet
    run_worker(store.url, once=True, **FAST)  # a restarted worker notices the dead one
    job = store.get_job(job_id)
    assert job["status"] == "interrupted" and f"process {worker.pid}" in job["error"]
    assert "Start it again" in job["error"]


def test_stale_heartbeat_and_late_finish(store):
    a = store.enqueue("tests.helpers_jobs:sleepy", {}, "a")
    b = store.enqueue("tests.helpers_jobs:sleepy", {}, "b")
    store.claim_next("elsewhere", worker_pid=12345, host="another-machine")
    store.claim_next("here", worker_pid=os.getpid(), host="this-machine")
    assert store.mark_interrupted_stale(30.0, host="this-machine") == []  # fresh, alive
    time.sleep(0.05)
    assert store.mark_interrupted_stale(0.01, pid_alive=lambda pid: True, host="this-machine") == [a, b]
    assert "no heartbeat" in store.get_job(a)["error"]
    assert not store.finish(a, "done")  # a late child cannot overwrite "interrupted"
    assert not store.update_progress(a, 0.5, "late")
    assert store.get_job(a)["status"] == "interrupted"


def test_log_tail_is_bounded(store):
    job_id = store.enqueue("tests.helpers_jobs:sleepy", {}, "chatty")
    store.claim_next("w")
    assert store.update_progress(job_id, 0.5, "talking", [f"line {i}" for i in range(500)])
    log = store.get_job(job_id)["log"].split("\n")
    assert len(log) == LOG_MAX_LINES and log[-1] == "line 499"


def test_claim_is_exclusive_across_processes(store):
    job_ids = {store.enqueue("tests.helpers_jobs:sleepy", {}, f"job {i}") for i in range(60)}
    script = textwrap.dedent("""
        import json, sys
        from engine.store import open_store
        s = open_store(sys.argv[1]); got = []
        while (job := s.claim_next(sys.argv[2])) is not None:
            got.append(job["id"])
        print(json.dumps(got))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, store.url, f"w{i}"], cwd=REPO,
                              stdout=subprocess.PIPE, text=True) for i in range(4)]
    claimed = {}
    for i, p in enumerate(procs):
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        for job_id in json.loads(out):
            assert job_id not in claimed, f"job {job_id} claimed twice"
            claimed[job_id] = f"w{i}"
    assert set(claimed) == job_ids
    assert all(store.get_job(j)["worker_id"] == w for j, w in claimed.items())


def test_start_worker_process_starts_only_one(store):
    first = start_worker_process(store.url)
    try:
        assert first is not None
        wait_for(lambda: worker_running(store.url) == first.pid, what="worker lock")
        assert start_worker_process(store.url) is None
        job_id = store.enqueue("tests.helpers_jobs:sleepy", {"steps": 1}, "served by the background worker")
        wait_for(lambda: store.get_job(job_id)["status"] == "done", what="background worker to run the job")
        assert [w["pid"] for w in store.list_workers(alive_within_s=30)] == [first.pid]
        first.send_signal(signal.SIGTERM)
        first.wait(15)
    finally:
        if first is not None and first.poll() is None:
            first.kill()
    assert worker_running(store.url) is None
    assert store.list_workers() == []


def test_cancel_of_job_whose_worker_is_gone_and_cleanup(store):
    job_id = store.enqueue("tests.helpers_jobs:sleepy", {}, "orphan")
    store.claim_next("ghost", worker_pid=12345, host="another-machine")
    assert store.request_cancel(job_id) == "running"  # fresh heartbeat: the worker will act on it
    assert store.get_job(job_id)["cancel_requested"]
    time.sleep(0.05)
    assert store.request_cancel(job_id, stale_after_s=0.01) == "cancelled"  # nobody left to act on it
    queued = store.enqueue("tests.helpers_jobs:sleepy", {}, "still queued")
    assert store.delete_finished_jobs(older_than_s=3600) == 0
    assert store.delete_finished_jobs() == 1
    assert [j["id"] for j in store.list_jobs()] == [queued]
    assert [j["id"] for j in store.list_jobs(status="queued")] == [queued]
    with pytest.raises(TlabError, match="Unknown job status"):
        store.list_jobs(status="sleeping")


def test_job_returning_a_bad_value_fails_clearly(store, tmp_path):
    job_id = store.enqueue("tests.helpers_jobs:sleepy", {"steps": 1, "result_ids": {"not": "a list"}}, "bad")
    run_worker(store.url, once=True, **FAST)
    job = store.get_job(job_id)
    assert job["status"] == "failed" and "must return the ids of the results" in job["error"]
