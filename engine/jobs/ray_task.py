"""What runs on a Ray node: one part of a job, in its own child process (needs the `ray` extra).

The Ray task never imports torch: it starts `python -m engine.jobs.child` (the local worker's own job
process) against a scratch SQLite store in a temporary folder, so a GPU's CUDA state dies with the
child, never builds up in a long-lived Ray worker. The task forwards the scratch job's progress and
log to the coordinator's ProgressBoard actor, stops the child's process group on cancel, and returns
the results the child saved. The coordinator alone writes the real store.
"""

import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import ray

from engine.jobs.procs import describe_exit
from engine.jobs.ray_split import new_lines

POLL_S = 0.5
KILL_GRACE_S = 5.0
LOG_TAIL_LINES = 40
ENV_SLOTS = "TLAB_CPU_SLOTS"  # engine.cpu_threads.ENV_SLOTS (a layer above jobs: named here, tested equal)
FOLDER_PREFIX = "tlab-ray-part-"  # + the Ray worker's pid: a folder whose pid is gone is left over


@ray.remote(num_cpus=0)
class ProgressBoard:
    """The coordinator's mailbox: parts report here (fire and forget), the coordinator polls."""

    def __init__(self):
        self.parts: dict[str, dict] = {}
        self.lines: dict[str, list[str]] = {}

    def report(self, job_id: int, key: str, update: dict, lines: list[str] | None = None) -> None:
        state = self.parts.setdefault(f"{job_id}/{key}", {})
        if update.get("attempt_started"):  # a retry after a crash starts over
            state["attempts"] = state.get("attempts", 0) + 1
        state.update(update)
        if lines:
            self.lines.setdefault(f"{job_id}/{key}", []).extend(lines)

    def take(self, job_id: int) -> dict:
        """{key: (state, new log lines)} of a job's parts; the lines are handed over once."""
        prefix = f"{job_id}/"
        out = {}
        for name, state in self.parts.items():
            if name.startswith(prefix):
                out[name[len(prefix):]] = (dict(state), self.lines.pop(name, []))
        return out

    def forget(self, job_id: int) -> None:
        prefix = f"{job_id}/"
        for name in [n for n in self.parts if n.startswith(prefix)]:
            self.parts.pop(name, None)
            self.lines.pop(name, None)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the child's process group, SIGKILL it after KILL_GRACE_S (as the local worker does)."""
    for sig, wait_s in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, n: int) -> list[str]:
    try:
        with open(path, errors="replace") as f:
            return list(deque((line.rstrip("\n") for line in f), maxlen=n))
    except OSError:
        return []


def _log_lines(job: dict) -> list[str]:
    return job["log"].split("\n") if job.get("log") else []


def _remove_orphaned_folders() -> None:
    """Scratch folders of parts whose Ray worker was killed (its finally never ran)."""
    from engine.system import pid_alive

    for path in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*-*"):
        pid = path.name[len(FOLDER_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _log_text(path: Path, max_bytes: int = 256 * 1024) -> str:
    """The child's full output (its last `max_bytes`), for the job's log file on the coordinator."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - max_bytes))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def thread_env(env: dict, assigned_cpus: float | None) -> dict:
    """The child's thread settings: those a local job gets, capped at the CPUs Ray gave this task.

    Ray sets OMP_NUM_THREADS to the task's num_cpus when it was unset; the child would start torch on
    that many threads. Instead it gets the Ray worker's environment without Ray's OMP_NUM_THREADS
    (a user's own value, different from Ray's, stays), and TLAB_CPU_SLOTS, which engine.cpu_threads
    reads as a cap on the threads it picks from the free cores, as it does for a local job."""
    out = dict(env)
    if assigned_cpus:
        slots = max(1, math.floor(assigned_cpus))
        if out.get("OMP_NUM_THREADS") == str(slots):  # Ray's default for this task, not a choice
            out.pop("OMP_NUM_THREADS")
        out[ENV_SLOTS] = str(slots)
    return out


def _child_env(scratch_url: str, home: str) -> dict:
    import engine

    root = str(Path(engine.__file__).resolve().parents[1])  # the child imports the engine this task did
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "TLAB_STORE_URL": scratch_url, "TLAB_WORKER_PID": str(os.getpid()),
           "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, "TLAB_HOME": os.environ.get("TLAB_HOME", home)}
    if not ray.get_gpu_ids():  # a CPU part must not touch a GPU it was not given
        env["CUDA_VISIBLE_DEVICES"] = ""
    return thread_env(env, ray.get_runtime_context().get_assigned_resources().get("CPU"))


@ray.remote(max_calls=1)  # a fresh Ray worker process per part: nothing lingers between jobs
def run_part(job_id: int, key: str, fn: str, payload: dict, board, owner: str | None = None) -> dict:
    """Run one part in a child process; returns {status, error, results, log_tail, timings, where}.

    Never blocks on ray.get: a task blocked there lends its CPU to another task, and two recipes
    would share one core. Cancel is Ray's: ray.cancel raises KeyboardInterrupt here, and the finally
    below stops the child's process group."""
    from engine.store import open_store

    t_start = time.time()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)  # this fresh Ray worker's only child: the job's
    _remove_orphaned_folders()
    folder = tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-")
    where = {"host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id(),
             "ray_worker_pid": os.getpid()}
    try:
        scratch_url = f"sqlite:///{folder}/scratch.db"
        scratch = open_store(scratch_url)
        # the job's owner goes on the scratch row: the child gives it to the results it saves
        scratch_id = scratch.enqueue(fn, payload, title=f"job {job_id} part {key}", owner=owner)
        scratch.claim_next(f"ray-{os.getpid()}", os.getpid(), where["host"])
        log_path = Path(folder) / "child.log"
        proc, sent = None, []
        try:
            with open(log_path, "wb") as out:
                proc = subprocess.Popen([sys.executable, "-m", "engine.jobs.child", str(scratch_id)],
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        env=_child_env(scratch_url, folder), start_new_session=True)
            where["child_pid"] = proc.pid
            t_child = time.time()
            board.report.remote(job_id, key, {"state": "running", "attempt_started": True, "fraction": 0.0,
                                              **where, "t_task_start": t_start, "t_child_start": t_child})
            while proc.poll() is None:
                try:
                    proc.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    pass
                job = scratch.get_job(scratch_id) or {}
                lines = _log_lines(job)
                update = {k: v for k, v in (("fraction", job.get("progress")), ("stage", job.get("stage"))) if v is not None}
                board.report.remote(job_id, key, update, new_lines(sent, lines))
                sent = lines
        finally:
            if proc is not None and proc.poll() is None:  # cancelled, or this task is being torn down
                _stop_group(proc)
        job = scratch.get_job(scratch_id) or {}
        results = [r.to_dict() for r in scratch.list_results(ids=job.get("result_ids") or [])]
        status, error = job.get("status"), job.get("error")
        if status == "running":  # crashed without recording its failure (segfault, OOM kill)
            status, error = "failed", describe_exit(proc.returncode)
        board.report.remote(job_id, key, {"state": status, **({"fraction": 1.0} if status == "done" else {})},
                            new_lines(sent, _log_lines(job)))
        scratch.close()
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped by now: its CPU seconds, for benchmarks
        child_cpu_s = (cpu.ru_utime - cpu_before.ru_utime) + (cpu.ru_stime - cpu_before.ru_stime)
        return {"key": key, "child_cpu_s": child_cpu_s, "status": status, "error": error, "results": results,
                "log_tail": _tail(log_path, LOG_TAIL_LINES) if status != "done" else [],
                "log_text": _log_text(log_path),
                "where": where, "t_task_start": t_start, "t_child_start": t_child, "t_child_end": time.time()}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
