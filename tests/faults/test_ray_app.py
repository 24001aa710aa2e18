"""The app → Ray path: with TLAB_EXECUTOR=ray and RAY_ADDRESS set, the demo sweep queued from the first
screen (AppTest) is run by the worker the app starts for itself (TLAB_APP_WORKER on), and that worker
is the Ray coordinator: the sweep is split into Ray tasks on a real 2-node loopback cluster, and its
results land in the app's store with the job's Ray log. The demo's data and speed workload are shrunk
to keep it to a few minutes on 2 cores; everything else is the app's own path."""

import os
import signal
from pathlib import Path

import pytest

from engine.runtimes.torch.kernels import int8_probe_exact
from tests.conftest import requires_bundled
from tests.faults.conftest import wait_for

ray = pytest.importorskip("ray", reason="the Ray executor needs the ray extra: pip install '.[ray]'")

pytestmark = [pytest.mark.ray, pytest.mark.faults, requires_bundled]

ROOT = Path(__file__).resolve().parents[2]
MAIN = str(ROOT / "app" / "main.py")



@pytest.fixture
def app_on_ray(fault_store, monkeypatch):
    """A fresh app store, the app's own worker enabled, and the executor set to a local Ray cluster."""
    from app import sweeps
    from engine.jobs.ray_local import local_cluster

    monkeypatch.setenv("TLAB_APP_WORKER", "1")
    # The demo as the app queues it, on less data and a shorter speed workload (two recipes: two parts).
    monkeypatch.setattr(sweeps, "DEMO_PRECISIONS", ("fp8", "int8_sq"))
    monkeypatch.setattr(sweeps, "DEMO_DATA", {"calib_size": 2, "calib_seq_len": 64, "eval_tokens": 256,
                                              "eval_seq_len": 128})
    monkeypatch.setattr(sweeps, "DEMO_WORKLOAD", {"input_len": 16, "output_len": 4, "batch_sizes": [1]})
    with local_cluster(nodes=2, cpus_per_node=1) as address:
        monkeypatch.setenv("TLAB_EXECUTOR", "ray")
        monkeypatch.setenv("RAY_ADDRESS", address)
        try:
            yield fault_store
        finally:
            _stop_app_worker(fault_store.url)
            log = Path(os.environ["TLAB_HOME"]) / "worker.log"
            if log.exists():
                print(log.read_text(errors="replace")[-3000:])

def _stop_app_worker(url: str) -> None:
    from engine.jobs.worker import worker_running
    from engine.system import pid_alive

    pid = worker_running(url)
    if pid and pid > 0:
        os.kill(pid, signal.SIGTERM)
        try:
            wait_for(what="the app's worker to stop", predicate=lambda: not pid_alive(pid), timeout=60, every=0.5)
        except AssertionError:
            os.kill(pid, signal.SIGKILL)


def test_the_demo_queued_in_the_app_runs_on_ray_and_lands_in_the_store(app_on_ray):
    from streamlit.testing.v1 import AppTest

    store = app_on_ray
    at = AppTest.from_file(MAIN, default_timeout=120).run()
    at.button(key="run_demo").click().run()
    assert not at.exception, at.exception
    (job,) = store.list_jobs()
    assert job["title"].startswith("Demo sweep")

    job = wait_for(what="the demo to finish on Ray", predicate=lambda: (j := store.get_job(job["id"]))["status"]
                not in ("queued", "running") and j, timeout=1200, every=2)
    assert job["status"] == "done", (job["error"], job["log"][-3000:])
    assert job["worker_id"].startswith("ray-"), job["worker_id"]  # claimed by the Ray coordinator
    log = job["log"]
    assert "Ray: 2 part(s) to run, 0 result(s) reused" in log, log[-3000:]
    assert log.count("sent to Ray (1 CPU)") == 2 and log.count("] attempt 1 on ") == 2, log[-3000:]

    results = store.list_results(ids=job["result_ids"])
    assert sorted(r.precision for r in results) == ["bf16", "fp8", "int8_sq"]
    assert all(r.status == "done" and r.metrics for r in results)
    # Each part's child used the one CPU its Ray task holds on this 2-node, 1-CPU-per-node cluster.
    assert {r.provenance["accuracy"]["cpu_threads"] for r in results} == {1}
    by_precision = {r.precision: r for r in results}
    int8_why = int8_probe_exact()  # a CPU without AVX512-VNNI computes INT8 wrongly: refused there, with why
    if int8_why:
        assert "AVX512-VNNI" in by_precision["int8_sq"].provenance["speed_not_measured"]
    else:
        assert "speed" in by_precision["int8_sq"].provenance  # timed in its part, against that part's baseline
    assert "speed_not_measured" in by_precision["fp8"].provenance  # no FP8 kernels on CPU: accuracy only

    # The Jobs page shows it done, like any local job.
    at.switch_page("../pages/jobs.py").run()
    assert not at.exception
    text = [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert any(f"#{job['id']} Demo sweep" in t and ": done" in t for t in text), text
    assert "3 result(s) saved." in text
    assert not ray.is_initialized()  # the app's own process never joined the cluster: its worker did
