"""A Ray part's child process gets the CPU threads a local job on its machine gets, capped at the CPUs
its Ray task holds: Ray's OMP_NUM_THREADS (its task's num_cpus) does not leak into the child, and a
CPU part asks for the most CPUs that still let every part run at once. No Ray cluster needed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import cpu_threads as ct
from engine.jobs.ray_split import cpus_per_part, plan_job

ray = pytest.importorskip("ray", reason="engine.jobs.ray_task needs the ray extra")
from engine.jobs.ray_task import thread_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# What a job's process starts torch with, and what the pipeline's job_threads then picks (on a probe
# that says the machine is idle, so the answer does not depend on who else uses this machine).
CHILD = """
import json, torch
from engine import cpu_threads
start = torch.get_num_threads()
chosen = cpu_threads.choose_threads(probe=lambda: 0.0, quota=lambda: None)
print(json.dumps({"start": start, "chosen": chosen[0], "why": chosen[1]}))
"""


def _child(env: dict) -> dict:
    env = {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _local_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", ct.ENV_SLOTS, ct.ENV_THREADS)}


def test_a_part_holding_the_whole_node_starts_and_picks_threads_as_a_local_job():
    """Ray sets OMP_NUM_THREADS=<num_cpus> in its worker: the child must not start torch on it, nor
    pick fewer threads than a local job would with the same CPUs."""
    from engine import system

    cores = len(system.usable_cpus())
    local = _child(_local_env())
    ray_worker_env = {**_local_env(), "OMP_NUM_THREADS": str(cores)}  # what Ray sets for a task of `cores` CPUs
    part = _child(thread_env(ray_worker_env, float(cores)))
    assert (part["start"], part["chosen"]) == (local["start"], local["chosen"]), (part, local)


def test_a_part_holding_some_cpus_uses_no_more_threads_than_that():
    """Two 1-CPU parts on a 2-core node: each child on 1 thread, not 2 each (4 threads on 2 cores)."""
    from engine import system

    if len(system.usable_cpus()) < 2:
        pytest.skip("needs 2 usable CPUs to tell a cap from the machine's size")
    part = _child(thread_env({**_local_env(), "OMP_NUM_THREADS": "1"}, 1.0))
    assert part["chosen"] == 1 and "Ray task" in part["why"]


def test_ray_omp_default_is_dropped_but_a_users_own_value_stays():
    from engine.jobs import ray_task

    assert ray_task.ENV_SLOTS == ct.ENV_SLOTS  # the task sets the variable the thread policy reads
    env = thread_env({"OMP_NUM_THREADS": "2", "PATH": "/bin"}, 2.0)
    assert "OMP_NUM_THREADS" not in env and env[ct.ENV_SLOTS] == "2" and env["PATH"] == "/bin"
    assert thread_env({"OMP_NUM_THREADS": "3"}, 2.0)["OMP_NUM_THREADS"] == "3"  # not Ray's: the user's
    assert thread_env({"OMP_NUM_THREADS": "1"}, 0.5)[ct.ENV_SLOTS] == "1"  # a fraction of a CPU: 1 thread
    assert thread_env({"A": "b"}, None) == {"A": "b"}  # no CPUs assigned (not under Ray): unchanged


def test_slots_cap_the_free_cores_and_bad_values_say_what_to_do():
    idle, none = (lambda: 0.0), (lambda: None)
    assert ct.choose_threads(env={ct.ENV_SLOTS: "1"}, probe=idle, cores=2, quota=none)[0] == 1
    assert ct.choose_threads(env={ct.ENV_SLOTS: "4"}, probe=idle, cores=8, quota=none)[0] == 4
    assert ct.choose_threads(env={ct.ENV_SLOTS: "8"}, probe=lambda: 6.0, cores=8, quota=none)[0] == 2  # busy wins
    assert ct.choose_threads(env={ct.ENV_SLOTS: "16"}, probe=idle, cores=8, quota=none)[0] == 8
    assert ct.choose_threads(env={ct.ENV_SLOTS: "1", ct.ENV_THREADS: "2"}, probe=idle, cores=2)[0] == 2  # user wins
    for bad in ("many", "inf"):
        with pytest.raises(ValueError, match="number of CPUs.*unset it"):
            ct.choose_threads(env={ct.ENV_SLOTS: bad}, probe=idle, cores=2, quota=none)


@pytest.mark.parametrize("parts,nodes,want", [
    (2, [1, 1], 1),      # the test cluster: 2 nodes of 1 CPU
    (1, [8], 8),         # one part gets the whole machine, as a local job would
    (4, [8], 2),
    (2, [8, 8], 8),
    (4, [16, 2], 4),     # all four fit on the big node
    (3, [4, 4], 2),
    (5, [1, 1], 1),      # cannot all run at once: 1 each
    (1, [], 1),
])
def test_cpus_per_part_is_the_most_that_lets_every_part_run_at_once(parts, nodes, want):
    assert cpus_per_part(parts, nodes) == want


def test_cpu_parts_ask_for_their_share_of_the_nodes_and_gpu_parts_do_not():
    from engine.spec import DataSpec, Recipe, SweepSpec

    def spec(device):
        return {"spec": SweepSpec(recipes=(Recipe("int8_sq"), Recipe("fp8")), device=device,
                                  data=DataSpec(calib_size=2, eval_tokens=256)).to_dict()}

    fn = "engine.pipeline:run_sweep_job"
    plan = plan_job(fn, spec("cpu"), lambda _: False, False, cluster={"CPU": 16.0}, node_cpus=[8.0, 8.0])
    assert [p.resources["num_cpus"] for p in plan.parts] == [8, 8]
    plan = plan_job(fn, spec("cpu"), lambda _: False, False, cluster={"CPU": 2.0}, node_cpus=[1.0, 1.0])
    assert [p.resources["num_cpus"] for p in plan.parts] == [1, 1]
    plan = plan_job(fn, spec("cuda"), lambda _: False, True, cluster={"CPU": 16.0, "GPU": 2.0}, node_cpus=[8.0, 8.0])
    assert [p.resources["num_cpus"] for p in plan.parts] == [1, 1]
