"""The first-screen demo, timed the way a newcomer meets it (issue #15 §1).

Queues exactly the job the app's "Run the demo sweep" button queues (app.sweeps.demo_jobs for this
machine's precision choices) in a fresh store, runs it through the real job worker (`tlab worker --once`:
child process, crash isolation), and prints the wall time from queueing to the job's end, the recipes with
a measured speed and the speedups, against the goals: at least three measured points (baseline included)
in under 3 minutes on 2 cores.

    python benchmarks/demo_sweep.py
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOAL_S = 180
GOAL_MEASURED = 3


def main() -> int:
    home = tempfile.mkdtemp(prefix="tlab-demo-bench-")
    os.environ["TLAB_HOME"] = home
    os.environ.pop("TLAB_STORE_URL", None)
    from app.sweeps import demo_jobs
    from engine import devices
    from engine.store import open_store

    store = open_store()
    ((payload, title),) = demo_jobs(devices.precision_choices(devices.detect_gpus(), "torch"))
    t0 = time.perf_counter()
    job_id = store.enqueue("engine.pipeline:run_sweep_job", payload, title)
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "worker", "--once"], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    job = next(j for j in store.list_jobs() if j["id"] == job_id)
    print(f"demo job #{job_id}: {job['status']} in {wall:.0f} s (store {home})")
    if job["status"] != "done":
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    measured = []
    for r in store.list_results():
        speeds = r.measurements if r.speed_kind == "measured" else []
        if speeds:
            m = speeds[0]
            key = "output_tokens_per_sec" if "output_tokens_per_sec" in m.metrics else "decode_tokens_per_sec"
            measured.append((r.precision, m.metrics.get(key), m.spread.get(key), r.metrics.get("speedup_bs1")))
        else:
            print(f"  accuracy only:  {r.precision:10s} {r.speed_not_measured or ''}")
    for label, tok_s, spread, speedup in measured:
        spread_txt = f"{spread:.0%}" if spread is not None else "unknown"
        speedup_txt = f"{speedup:.2f}x" if speedup else "refused or baseline"
        print(f"  measured speed: {label:10s} {tok_s:8.1f} tok/s (run-to-run spread {spread_txt}), "
              f"speedup {speedup_txt}")
    print(f"wall time {wall:.0f} s (goal < {GOAL_S} s: {'met' if wall < GOAL_S else 'MISSED'}); "
          f"measured points {len(measured)} (goal >= {GOAL_MEASURED}: "
          f"{'met' if len(measured) >= GOAL_MEASURED else 'MISSED'})")
    print(f"cpu: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end "
          "(a busy machine makes the wall time longer and may refuse noisy speedups)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
