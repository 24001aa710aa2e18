"""A job that exhausts its memory (a real allocation loop under an address-space limit) fails alone,
with a message that says what happened and what to do; the worker and the jobs around it go on."""

import pytest

from engine.jobs.worker import run_worker

pytestmark = pytest.mark.faults
FAST = {"poll_s": 0.05, "heartbeat_s": 0.2}


def test_out_of_memory_job_fails_alone(fault_store, counts):
    store = fault_store
    before = store.enqueue("tests.helpers_jobs:sleepy", {"steps": 2, "result_ids": []}, "before")
    hog = store.enqueue("tests.faults.fault_jobs:eat_memory", {"headroom_mb": 256}, "eats memory")
    after = store.enqueue("tests.helpers_jobs:sleepy", {"steps": 2}, "after")
    assert run_worker(store.url, once=True, **FAST) == 3  # one worker ran all three
    counts["faults injected"] += 1
    jobs = {j["id"]: j for j in store.list_jobs()}
    assert jobs[hog]["status"] == "failed"
    assert jobs[hog]["error"].startswith("The job ran out of memory"), jobs[hog]["error"]
    assert "smaller model" in jobs[hog]["error"]
    assert "address space limited to" in jobs[hog]["log"]  # it really ran under the limit
    assert jobs[before]["status"] == jobs[after]["status"] == "done"
    counts["jobs finished"] += 2
