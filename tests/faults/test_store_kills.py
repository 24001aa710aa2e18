"""SIGKILL the worker and its job in the middle of store writes, again and again, then restart: the
file passes SQLite's integrity check, every batch is all there or not at all, finished results are
unchanged, and each killed job is reported interrupted and runs to the end when queued again."""

import random
import time

import pytest

from engine.jobs.worker import run_worker
from tests.faults.conftest import db_file, integrity, kill9, start_worker, wait_for
from tests.faults.fault_jobs import BATCH, METRICS

pytestmark = pytest.mark.faults
STORM = "tests.faults.fault_jobs:write_storm"
ROUNDS = 6
BATCHES = 150  # more than a round writes before its kill (each batch takes a few ms)
FAST = {"poll_s": 0.05, "heartbeat_s": 0.2}


def _saved_batches(store, tag: str) -> int:
    return len([j for j in store.list_results(experiment=tag)]) // BATCH


def test_kill9_mid_store_write_loses_and_corrupts_nothing(fault_store, counts):
    store = fault_store
    rng = random.Random(14)
    finished = store.enqueue(STORM, {"tag": "finished", "batches": 3}, "finished before the faults")
    assert run_worker(store.url, once=True, **FAST) == 1 and store.get_job(finished)["status"] == "done"
    counts["jobs finished"] += 1
    before = {r.id: r.to_dict() for r in store.list_results(experiment="finished")}
    assert len(before) == 3 * BATCH

    killed = []
    for n in range(ROUNDS):
        tag = f"storm{n}"
        job_id = store.enqueue(STORM, {"tag": tag, "batches": BATCHES}, f"killed mid-write #{n}")
        worker = start_worker(store)
        try:
            child = wait_for(lambda: (j := store.get_job(job_id))["status"] == "running" and j["pid"],
                             what="the job's process to start")
            wait_for(lambda: _saved_batches(store, tag) >= 2, what="the job to be writing", every=0.01)
            time.sleep(rng.uniform(0.0, 0.3))  # somewhere inside a write: each batch takes a few ms
            kill9(child, worker.pid)  # the writer and its worker, as a power cut or the OOM killer would
            counts["faults injected"] += 1
            worker.wait(10)
        finally:
            if worker.poll() is None:
                worker.kill()
        killed.append((job_id, tag))

    assert integrity(db_file(store)) == ["ok"]
    assert run_worker(store.url, once=True, **FAST) == 0  # the restarted worker notices the dead one
    assert store.unreadable_results() == {}
    lost = 0
    for job_id, tag in killed:
        job = store.get_job(job_id)
        assert job["status"] == "interrupted" and "Start it again" in job["error"], job
        results = store.list_results(experiment=tag)
        by_batch = {}
        for r in results:
            by_batch.setdefault(r.id.rsplit("-", 1)[0], []).append(r)
            assert len(r.metrics) == METRICS  # a result never without some of its metric rows
        lost += sum(BATCH - len(rs) for rs in by_batch.values())  # a batch is all there or not at all
    after = {r.id: r.to_dict() for r in store.list_results(experiment="finished")}
    lost += sum(1 for rid, rec in before.items() if after.get(rid) != rec)
    counts["rows lost"] += lost
    assert lost == 0

    # Queued again as it was (the Jobs page's "Run again"), an interrupted job runs to the end.
    job = store.get_job(killed[0][0])
    again = store.enqueue(job["fn"], job["payload"], job["title"], owner=job["owner"])
    assert run_worker(store.url, once=True, **FAST) == 1
    assert store.get_job(again)["status"] == "done" and _saved_batches(store, killed[0][1]) == BATCHES
    counts["jobs finished"] += 1
    assert integrity(db_file(store)) == ["ok"]
