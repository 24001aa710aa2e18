"""The same 4-recipe bundled-model sweep on the local worker and on a local 2-node Ray cluster.

    python benchmarks/ray_sweep.py [--rounds 1] [--calib-size 2] [--eval-tokens 256]

What it compares, like with like: the cluster is 2 nodes of 1 CPU on this machine, so both runs have
the same cores. The local worker runs the sweep in one child process on the threads engine.cpu_threads
picks (the free cores: 2 on an idle 2-core machine); the Ray executor splits it into 2 parts (one per
slot), each a Ray task holding 1 CPU whose child runs on 1 thread (TLAB_CPU_SLOTS), in parallel.

Each run gets its own fresh store (nothing reused); each job is timed from claim to finish as the
store records it. Excluded from the Ray time: the cluster's start and the coordinator's connect (it
connects before it claims the job). Included, because a user waits for them: splitting the job, Ray
placing each task and starting its worker process, each part's child start, every part loading the
model and evaluating the baseline again (the local sweep does it once), the results' way back and
the coordinator's store writes. It prints the Ray run's overhead as a % of the local sweep time
(goal <= 15%), each recipe's stage times and threads in both runs, and the per-part scheduling
overhead (placing + starting the task, child start, result back).

The machine may be shared: the load average around each run is printed with each job's CPU seconds
(its child processes'; Ray's own daemons not counted), which other programs' load inflates far less
than wall time, so a busy machine shows as such, not as Ray overhead. `--rounds N` alternates
local and Ray runs N times (one cluster for all) and reports each round and the median overhead.
Needs the `ray` extra.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
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


def _stages(result: dict) -> dict:
    threads = ((result.get("provenance") or {}).get("accuracy") or {}).get("cpu_threads")
    return {**(result.get("timings") or {}), "threads": threads}


def run_local(folder: Path, payload: dict) -> tuple[float, float, dict]:
    from engine.jobs.worker import run_worker
    from engine.store import open_store

    url = f"sqlite:///{folder}/local.db"
    store = open_store(url)
    job_id = store.enqueue("engine.pipeline:run_sweep_job", payload, "local sweep")
    before = _children_cpu_s()
    run_worker(url, once=True)
    cpu_s = _children_cpu_s() - before  # the job's child process, reaped by the worker
    seconds = _job_seconds(store, job_id)
    return seconds, cpu_s, {r.precision: _stages(r.to_dict()) for r in store.list_results()}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


STAGES = ("threads", "load_s", "baseline_s", "calibrate_s", "evaluate_s")


def print_stages(local: dict, timings: list[dict]) -> None:
    """Each recipe's stage times in the local child and in its Ray part's child, side by side."""
    print("stage seconds (threads, model load, baseline reference, calibration, evaluation):")
    rows = [("local", local)] + [(f"ray part [{t['key']}]", t.get("stages") or {}) for t in timings]
    for name, stages in rows:
        for precision, st in stages.items():
            cells = " ".join(f"{k}={st[k]:.1f}" if isinstance(st.get(k), float) else f"{k}={st.get(k)}"
                             for k in STAGES if st.get(k) is not None)
            print(f"  {name:<40} {precision:<9} {cells}")


def run_ray(url: str, address: str, payload: dict) -> tuple[float, list[dict]]:
    import ray

    from engine.jobs.ray_executor import run_ray_worker
    from engine.store import open_store

    store = open_store(url)
    job_id = store.enqueue("engine.pipeline:run_sweep_job", payload, "ray sweep")
    out: list = []
    try:
        run_ray_worker(url, address, once=True, coordinator_out=out)
    finally:
        ray.shutdown()
    return _job_seconds(store, job_id), out[0].timings


def scheduling(timings: list[dict]) -> dict[str, list[float]]:
    """Per part: seconds Ray took to place and start its task once a slot was free, to start its
    child, and to bring its result back to the coordinator."""
    ends = [t["t_child_end"] for t in timings]
    # A part that waits for a free slot is queued, not scheduled: count from when it could start.
    place = [t["t_task_start"] - max([t["submitted"]] + [e for e in ends if e <= t["t_task_start"]])
             for t in timings]
    spawn = [t["t_child_start"] - t["t_task_start"] for t in timings]
    back = [t["returned"] - t["t_child_end"] for t in timings]
    return {"place": place, "spawn": spawn, "back": back, "total": [a + b + c for a, b, c in zip(place, spawn, back)]}


def one_round(folder: Path, n: int, address: str, payload: dict) -> tuple[float, list[dict]]:
    load = os.getloadavg()[0]
    local_s, local_cpu, local_stages = run_local(folder / f"local{n}", payload)
    print(f"round {n}: local worker: sweep job {local_s:.1f} s, its process {local_cpu:.1f} CPU s "
          f"(load average before: {load:.1f}, after: {os.getloadavg()[0]:.1f})", flush=True)
    load = os.getloadavg()[0]
    ray_s, timings = run_ray(f"sqlite:///{folder}/ray{n}.db", address, payload)
    overhead = 100.0 * (ray_s - local_s) / local_s
    ray_cpu = sum(t.get("child_cpu_s") or 0.0 for t in timings)
    print(f"round {n}: Ray, 2 local nodes x 1 CPU: sweep job {ray_s:.1f} s, its parts' processes {ray_cpu:.1f} "
          f"CPU s (load average before: {load:.1f}, after: {os.getloadavg()[0]:.1f}): overhead "
          f"{overhead:+.1f}% of the local sweep time; CPU work {100.0 * (ray_cpu - local_cpu) / local_cpu:+.1f}% "
          "(the split's extra work; CPU seconds grow far less than wall time with other programs' load)", flush=True)
    print_stages(local_stages, timings)
    return overhead, timings


def _convert_once(payload: dict) -> None:
    """Convert the bundled GGUF into the cache folder before any timing: both runs then read the kept
    copy, as every sweep after a user's first does (engine/models/gguf_cache.py)."""
    import time

    from engine.models import load_model
    from engine.spec import SweepSpec

    t0 = time.perf_counter()
    load_model(SweepSpec.from_dict(payload["spec"]).model)
    print(f"bundled model converted into the cache folder once, outside every timing: {time.perf_counter() - t0:.1f} s",
          flush=True)


def main(argv=None) -> int:
    from engine.jobs.ray_local import local_cluster

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calib-size", type=int, default=2)
    ap.add_argument("--eval-tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=1, help="alternate local and Ray runs this many times")
    args = ap.parse_args(argv)
    payload = _sweep(args)
    overheads, timings = [], []
    with tempfile.TemporaryDirectory(prefix="tlab-ray-bench-") as tmp:
        os.environ["TLAB_HOME"] = tmp  # nothing lands in the user's data folder
        os.environ.pop("TLAB_STORE_URL", None)
        _convert_once(payload)
        with local_cluster(nodes=2, cpus_per_node=1) as address:  # started once, outside every timing
            for n in range(1, args.rounds + 1):
                (Path(tmp) / f"local{n}").mkdir()
                overhead, part_timings = one_round(Path(tmp), n, address, payload)
                overheads.append(overhead)
                timings += part_timings
    overhead = statistics.median(overheads)
    print(f"Ray overhead over the local run: {overhead:+.1f}% of the local sweep time (median of "
          f"{len(overheads)} round(s): {', '.join(f'{o:+.1f}%' for o in overheads)}; goal <= {GOAL_PCT:.0f}%: "
          f"{'met' if overhead <= GOAL_PCT else 'NOT met'})")
    sched = scheduling(timings)
    print(f"scheduling overhead per part (one part per recipe when the cluster has a slot for each): median "
          f"{statistics.median(sched['total']):.2f} s, max {max(sched['total']):.2f} s over {len(timings)} parts "
          f"(placing the task + starting its Ray worker once a slot is free: {statistics.median(sched['place']):.2f} s; "
          f"scratch store + child start: {statistics.median(sched['spawn']):.2f} s; result back to the "
          f"coordinator: {statistics.median(sched['back']):.2f} s)")
    setup = [t["setup_s"] for t in timings]
    print(f"each part loads the model and evaluates the baseline (median {statistics.median(setup):.1f} s per "
          "part; the local sweep does it once): the split's cost, inside the Ray sweep times above.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
