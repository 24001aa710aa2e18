"""The same 4-recipe bundled-model sweep on the local worker and on a local 2-node Ray cluster.

    python benchmarks/ray_sweep.py [--calib-size 2] [--eval-tokens 256]

Each run gets its own fresh store (nothing reused). It times each job from claim to finish as the
store records it (the Ray cluster's start is excluded; connecting to it is not), and prints the Ray
run's overhead over the local run as a % of the local sweep time (goal <= 15%), plus the per-recipe
scheduling overhead: Ray placing the task and starting its worker process, the task starting its
child process, and the result's way back. On a 2-core machine 2 nodes cannot speed a sweep up; the
scheduling overhead is what bounds the speedup on a real cluster. Needs the `ray` extra.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL_PCT = 15.0


def _sweep(args) -> dict:
    from engine.spec import DataSpec, Recipe, SweepSpec

    spec = SweepSpec(recipes=tuple(Recipe(p) for p in ("int8_sq", "int4_awq", "w4a8_awq", "fp8")),
                     data=DataSpec(calib_size=args.calib_size, calib_seq_len=64, eval_tokens=args.eval_tokens,
                                   eval_seq_len=128), device="cpu", experiment="ray benchmark")
    return {"spec": spec.to_dict()}


def _job_seconds(store, job_id: int) -> float:
    job = store.get_job(job_id)
    if job["status"] != "done":
        raise SystemExit(f"job {job_id} ended {job['status']}: {job['error']}\n{job['log'][-2000:]}")
    start, end = (datetime.fromisoformat(job[k]) for k in ("started_at", "finished_at"))
    return (end - start).total_seconds()


def run_local(folder: Path, payload: dict) -> float:
    from engine.jobs.worker import run_worker
    from engine.store import open_store

    url = f"sqlite:///{folder}/local.db"
    store = open_store(url)
    job_id = store.enqueue("engine.pipeline:run_sweep_job", payload, "local sweep")
    run_worker(url, once=True)
    return _job_seconds(store, job_id)


def run_ray(folder: Path, payload: dict) -> tuple[float, list[dict]]:
    import ray

    from engine.jobs.ray_executor import run_ray_worker
    from engine.jobs.ray_local import local_cluster
    from engine.store import open_store

    url = f"sqlite:///{folder}/ray.db"
    store = open_store(url)
    with local_cluster(nodes=2, cpus_per_node=1) as address:
        job_id = store.enqueue("engine.pipeline:run_sweep_job", payload, "ray sweep")
        out: list = []
        try:
            run_ray_worker(url, address, once=True, coordinator_out=out)
        finally:
            ray.shutdown()
    return _job_seconds(store, job_id), out[0].timings


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calib-size", type=int, default=2)
    ap.add_argument("--eval-tokens", type=int, default=256)
    args = ap.parse_args(argv)
    payload = _sweep(args)
    with tempfile.TemporaryDirectory(prefix="tlab-ray-bench-") as tmp:
        os.environ["TLAB_HOME"] = tmp  # nothing lands in the user's data folder
        os.environ.pop("TLAB_STORE_URL", None)
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        local_s = run_local(Path(tmp), payload)
        print(f"local worker: sweep job {local_s:.1f} s (load average before: {load:.1f}; "
              f"{time.perf_counter() - t0:.1f} s with worker start)", flush=True)
        load = os.getloadavg()[0]
        ray_s, timings = run_ray(Path(tmp), payload)
        print(f"Ray, 2 local nodes x 1 CPU: sweep job {ray_s:.1f} s (load average before: {load:.1f})")
    overhead = 100.0 * (ray_s - local_s) / local_s
    # A part that waits for a free slot is queued, not scheduled: count from when it could start.
    ends = [t["t_child_end"] for t in timings]
    place = [t["t_task_start"] - max([t["submitted"]] + [e for e in ends if e <= t["t_task_start"]])
             for t in timings]
    spawn = [t["t_child_start"] - t["t_task_start"] for t in timings]
    back = [t["returned"] - t["t_child_end"] for t in timings]
    per_recipe = [a + b + c for a, b, c in zip(place, spawn, back)]
    print(f"Ray overhead over the local run: {overhead:+.1f}% of the local sweep time "
          f"(goal <= {GOAL_PCT:.0f}%: {'met' if overhead <= GOAL_PCT else 'NOT met'})")
    print(f"scheduling overhead per part (one part per recipe when the cluster has a slot for each): median "
          f"{statistics.median(per_recipe):.2f} s, max {max(per_recipe):.2f} s over {len(per_recipe)} parts (placing the task + starting its Ray worker once a slot is free: "
          f"{statistics.median(place):.2f} s; scratch store + child start: {statistics.median(spawn):.2f} s; "
          f"result back to the coordinator: {statistics.median(back):.2f} s)")
    setup = [t["setup_s"] for t in timings]
    print(f"{len(timings)} part(s) for 2 slots: each loads the model and evaluates the baseline "
          f"(median {statistics.median(setup):.1f} s per part; the local sweep does it once): the split's "
          "cost, not Ray's, inside the sweep times above.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
