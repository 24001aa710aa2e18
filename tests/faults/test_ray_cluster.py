"""A real Ray cluster on loopback (head + one worker node, 1 CPU each, no GPU) runs sweeps queued in
the store through `tlab worker --executor ray`: a 4-recipe sweep finishes although one Ray worker is
killed with SIGKILL mid-job, a finished sweep is never recomputed, and cancel stops a running one.
The test starts the cluster and stops it (`ray stop`) in a finally. About 5 minutes on 2 cores."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import requires_bundled
from tests.faults.conftest import wait_for

ray = pytest.importorskip("ray", reason="the Ray executor needs the ray extra: pip install '.[ray]'")
psutil = pytest.importorskip("psutil")

pytestmark = [pytest.mark.ray, pytest.mark.faults, requires_bundled]

ROOT = Path(__file__).resolve().parents[2]
ATTEMPT = re.compile(r"\[(?P<key>[^\]]+)\] attempt (?P<n>\d+) on \S+: Ray worker pid (?P<worker>\d+), child pid (?P<child>\d+)")
COUNTS = {"faults injected": 0, "jobs finished": 0}


def _sweep(seed: int) -> dict:
    from engine.spec import DataSpec, Recipe, SweepSpec

    spec = SweepSpec(recipes=(Recipe("int8_sq"), Recipe("int4_awq"), Recipe("w4a8_awq"), Recipe("fp8")),
                     data=DataSpec(calib_size=2, calib_seq_len=64, eval_tokens=256, eval_seq_len=128, seed=seed),
                     device="cpu", experiment="ray fault test")
    return {"spec": spec.to_dict()}



def _attempts(store, job_id: int) -> list[dict]:
    return [m.groupdict() for m in ATTEMPT.finditer((store.get_job(job_id) or {}).get("log") or "")]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(scope="module")
def cluster():
    from engine.jobs.ray_local import local_cluster

    with local_cluster(nodes=2, cpus_per_node=1) as address:
        yield address  # COUNTS: added to the suite's totals by tests/faults/conftest.py


@pytest.fixture
def coordinator(cluster, tmp_path):
    """`tlab worker --executor ray` against a fresh SQLite store; stopped with SIGTERM afterwards."""
    from engine.store import open_store

    url = f"sqlite:///{tmp_path}/store.db"
    store = open_store(url)  # created (migrated) before the worker starts
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TLAB_EXECUTOR": "ray", "RAY_ADDRESS": cluster}
    log = open(tmp_path / "coordinator.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "engine.jobs.worker", "--store-url", url, "--poll", "0.2"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield store
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        print((tmp_path / "coordinator.log").read_text(errors="replace")[-3000:])


def test_a_sweep_survives_a_killed_ray_worker_and_is_never_recomputed(coordinator):
    store = coordinator
    job_id = store.enqueue("engine.pipeline:run_sweep_job", _sweep(seed=1), "ray sweep", owner="alice")
    # Mid-job: a part has started its child and that child has loaded the model.
    first = wait_for(what="a part to start", predicate=lambda: _attempts(store, job_id), timeout=180)[0]
    wait_for(what="the part to load the model", predicate=lambda: any(
        line.startswith(f"[{first['key']}] ") and "tokenizing" in line
        for line in (store.get_job(job_id)["log"] or "").splitlines()), timeout=180)
    child = int(first["child"])
    worker = psutil.Process(child).ppid()  # the Ray worker process running our task
    assert worker == int(first["worker"])
    os.kill(worker, signal.SIGKILL)
    COUNTS["faults injected"] += 1
    wait_for(what="the killed worker's child to stop (it watches its parent)", predicate=lambda: _gone(child), timeout=30)

    job = wait_for(what="the sweep to finish", predicate=lambda: (j := store.get_job(job_id))["status"] in
                ("done", "failed", "cancelled", "interrupted") and j, timeout=900, every=2)
    assert job["status"] == "done", (job["error"], job["log"][-3000:])
    COUNTS["jobs finished"] += 1
    retried = [a for a in _attempts(store, job_id) if a["key"] == first["key"]]
    assert [a["n"] for a in retried] == ["1", "2"], job["log"][-3000:]  # Ray ran the killed part again
    import tempfile

    assert not list(Path(tempfile.gettempdir()).glob(f"tlab-ray-part-{worker}-*"))  # its scratch folder: removed
    assert len(job["result_ids"]) == 5
    results = store.list_results(ids=job["result_ids"])
    assert sorted(r.id for r in results) == sorted(job["result_ids"])
    assert all(r.status == "done" and r.metrics for r in results)
    assert {r.owner for r in results} == {"alice"}  # the job's owner, carried through the Ray parts
    assert {r.precision for r in results} == {"bf16", "int8_sq", "int4_awq", "w4a8_awq", "fp8"}

    # The same sweep again: every result is reused, no part is sent to Ray.
    again = store.enqueue("engine.pipeline:run_sweep_job", _sweep(seed=1), "ray sweep again")
    job = wait_for(what="the repeated sweep", predicate=lambda: (j := store.get_job(again))["status"] != "queued"
                and j["status"] != "running" and j, timeout=120)
    assert job["status"] == "done" and sorted(job["result_ids"]) == sorted(results_ids := [r.id for r in results])
    assert "0 part(s) to run, 5 result(s) reused" in job["log"]
    assert len(store.list_results(ids=results_ids)) == 5
    COUNTS["jobs finished"] += 1


def test_cancel_stops_the_parts_on_the_cluster(coordinator):
    store = coordinator
    job_id = store.enqueue("engine.pipeline:run_sweep_job", _sweep(seed=2), "ray sweep to cancel")
    started = wait_for(what="both parts to start", predicate=lambda: len(a := _attempts(store, job_id)) >= 2 and a, timeout=180)
    assert store.request_cancel(job_id) == "running"
    COUNTS["faults injected"] += 1
    job = wait_for(what="the job to be cancelled", predicate=lambda: (j := store.get_job(job_id))["status"] != "running" and j,
                timeout=60)
    assert job["status"] == "cancelled", job
    for a in started:  # each part stopped its child's process group
        wait_for(what=f"child {a['child']} to stop", predicate=lambda pid=int(a["child"]): _gone(pid), timeout=30)
    from engine.spec import SweepSpec

    ids = [e.id for e in SweepSpec.from_dict(_sweep(seed=2)["spec"]).experiments()]
    assert store.list_results(ids=ids) == []  # stopped long before any part could finish
    COUNTS["jobs finished"] += 1
