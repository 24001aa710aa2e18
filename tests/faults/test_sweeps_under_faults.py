"""Real sweeps on the bundled model: two sessions submit overlapping sweeps at the same moment, the
worker is killed with SIGKILL while the first one calibrates, then restarted.

The killed job is reported interrupted; the other completes; the killed one, queued again, reuses
every result instead of computing it again; the store passes SQLite's integrity check and holds each
spec exactly once, owned by the user whose job computed it."""

import os
import subprocess
import sys
import time

import pytest

from engine.jobs.worker import run_worker
from engine.pipeline import sweep_payload
from engine.spec import DataSpec, ModelRef, Recipe, SweepSpec
from tests.conftest import requires_bundled
from tests.faults.conftest import REPO, db_file, integrity, kill9, start_worker, wait_for

pytestmark = [pytest.mark.faults, requires_bundled]
SWEEP_FN = "engine.pipeline:run_sweep_job"
DATA = DataSpec(calib_size=2, calib_seq_len=64, eval_tokens=512, eval_seq_len=256)  # ~1.5 min a sweep on 2 cores
SWEEPS = {"alice": SweepSpec(ModelRef(), (Recipe("fp8"), Recipe("int8_sq")), DATA, experiment="alice's"),
          "bob": SweepSpec(ModelRef(), (Recipe("int8_sq"), Recipe("fp8")), DATA, experiment="bob's")}
FAST = {"poll_s": 0.2, "heartbeat_s": 0.5}

# Each session is its own process; both wait for the same moment, then queue their sweep.
SUBMIT = """
import json, sys, time
from engine.store import open_store
store = open_store(sys.argv[1])
start, owner, payload = float(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
time.sleep(max(0.0, start - time.time()))
print(store.enqueue("engine.pipeline:run_sweep_job", payload, owner + "'s sweep", owner=owner))
"""


def _submit_at_once(store) -> dict[str, int]:
    import json

    start = time.time() + 3.0  # both processes are up and have opened the store by then
    procs = {owner: subprocess.Popen([sys.executable, "-c", SUBMIT, store.url, str(start), owner,
                                      json.dumps(sweep_payload(spec))], cwd=REPO, stdout=subprocess.PIPE,
                                     text=True, env=os.environ.copy())
             for owner, spec in SWEEPS.items()}
    ids = {}
    for owner, proc in procs.items():
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        ids[owner] = int(out.strip())
    return ids


def _calibrating(store):
    running = store.list_jobs(status="running")
    if running and running[0]["pid"] and running[0]["stage"].startswith(("applying", "calibrating")):
        return running[0]
    return None


def test_overlapping_sweeps_and_a_worker_killed_mid_calibration(fault_store, counts):
    store = fault_store
    jobs = _submit_at_once(store)
    assert sorted(jobs.values()) == sorted(set(jobs.values()))  # two jobs, neither lost

    worker = start_worker(store)
    try:
        victim = wait_for(lambda: _calibrating(store), timeout=240, what="a sweep to start calibrating", every=0.2)
        kill9(worker.pid)
        counts["faults injected"] += 1
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    from engine.system import pid_alive

    wait_for(lambda: not pid_alive(victim["pid"]), timeout=30, what="the orphaned sweep process to stop")
    assert integrity(db_file(store)) == ["ok"]

    # Restarted, the worker reports the killed job interrupted and runs the other sweep.
    assert run_worker(store.url, once=True, **FAST) == 1
    killed = store.get_job(victim["id"])
    assert killed["status"] == "interrupted" and "Start it again" in killed["error"], killed
    other_owner = next(o for o, j in jobs.items() if j != victim["id"])
    other = store.get_job(jobs[other_owner])
    assert other["status"] == "done", other
    counts["jobs finished"] += 1

    # Queued again as it was, the killed sweep finds every result computed and computes nothing.
    again = store.enqueue(killed["fn"], killed["payload"], killed["title"], owner=killed["owner"])
    assert run_worker(store.url, once=True, **FAST) == 1
    rerun = store.get_job(again)
    assert rerun["status"] == "done" and "reused all 3 result(s)" in rerun["log"], rerun["log"]
    assert "applying" not in rerun["log"]
    counts["jobs finished"] += 1

    expected = {s.id for spec in SWEEPS.values() for s in spec.replace(device="cpu").experiments()}
    assert len(expected) == 3  # the baseline, FP8 and INT8 SmoothQuant: equal specs in both sweeps
    stored = store.list_results()
    lost = len(expected - {r.id for r in stored})
    counts["rows lost"] += lost
    assert lost == 0 and len(stored) == 3  # nothing lost, nothing twice
    assert set(other["result_ids"]) == set(rerun["result_ids"]) == expected
    for r in stored:
        assert r.status == "done" and r.metrics["perplexity"] > 0
        assert r.owner == other_owner  # computed by the sweep that finished
    assert sum(log.count("applying FP8") for log in (other["log"], rerun["log"])) == 1
    assert integrity(db_file(store)) == ["ok"]
