"""The local worker: takes queued jobs from the store and runs each in its own child process.

    run_worker()                     # loop until stopped (Ctrl-C / SIGTERM / stop_event)
    start_worker_process()           # from the app: a background worker, unless one is already alive

One job at a time (jobs hold the GPU). While a job runs the worker sends heartbeats and watches the
job's cancel flag; it kills the child's whole process group on cancel. A worker started with
`single=True` holds an exclusive lock file under $TLAB_HOME/workers/ for its lifetime (released by
the OS even on SIGKILL), so the app never starts a second one for the same store.
"""

import argparse
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from pathlib import Path

from engine.errors import StoreError, TlabError
from engine.jobs.child import owner_env
from engine.jobs.procs import describe_exit
from engine.paths import default_store_url, tlab_home

log = logging.getLogger("tlab.worker")

HEARTBEAT_S = 1.0
STALE_AFTER_S = 30.0  # a running job without a heartbeat for this long belongs to a dead worker
KILL_GRACE_S = 5.0  # after SIGTERM, how long a cancelled job may take to exit before SIGKILL
CRASH_LOG_LINES = 40


def job_log_path(job_id: int) -> Path:
    """The job's full stdout/stderr (the store keeps only the tail)."""
    folder = tlab_home() / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{job_id}.log"


def worker_lock_path(store_url: str) -> Path:
    folder = tlab_home() / "workers"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{hashlib.sha256(store_url.encode()).hexdigest()[:16]}.lock"


def _tail(path: Path, n: int) -> list[str]:
    try:
        with open(path, errors="replace") as f:
            return list(deque((line.rstrip("\n") for line in f), maxlen=n))
    except OSError:
        return []


def _stop_child(proc: subprocess.Popen) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it has not exited in KILL_GRACE_S."""
    for sig, wait_s in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            if hasattr(os, "killpg"):
                os.killpg(proc.pid, sig)  # the child is a session leader: its own helpers die too
            else:
                proc.kill()
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


class _Lock:
    """Exclusive lock on a file, held for the worker's life; the OS drops it when the process dies."""

    def __init__(self, path: Path):
        self.path, self._f = path, None

    def acquire(self, wait_s: float = 1.0) -> "_Lock | None":
        """The lock, or None if another process still holds it after `wait_s` (probes hold it briefly)."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock; start_worker_process falls back to the workers table
            return self
        f = open(self.path, "a+")  # noqa: SIM115 - held open for the life of the lock
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    f.close()
                    return None
                time.sleep(0.05)
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._f = f
        return self

    def release(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _lock_held(path: Path) -> bool:
    """True if some process holds the lock (probe with a shared lock; never writes the file)."""
    try:
        import fcntl
    except ImportError:
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def worker_running(store_url: str | None = None) -> int | None:
    """Pid of the live single-instance worker for this store on this machine, else None."""
    url = store_url or default_store_url()
    path = worker_lock_path(url)
    if not path.exists() or not _lock_held(path):
        return None
    try:
        pid = int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        pid = 0
    return pid or -1  # -1: held by a process that has not written its pid yet


class _Worker:
    def __init__(self, store, url: str, stop_event: threading.Event, heartbeat_s: float):
        self.store, self.url, self.stop, self.heartbeat_s = store, url, stop_event, heartbeat_s
        self.host = socket.gethostname()
        self.id = f"{self.host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def run_job(self, job: dict) -> None:
        try:
            self.run_one(job)
        except StoreError:
            raise  # the store is unreachable: failing the job would fail too
        except Exception as e:  # e.g. the child process could not be started: fail the job, not the worker
            log.exception("job %s: the worker failed to run it", job["id"])
            self.store.finish(job["id"], "failed",
                              error=f"The worker could not run this job: {type(e).__name__}: {e}")

    def run_one(self, job: dict) -> None:
        job_id = job["id"]
        log.info("job %s started: %s (%s)", job_id, job["title"], job["fn"])
        log_path = job_log_path(job_id)
        env = {**os.environ, "TLAB_STORE_URL": self.url, "TLAB_WORKER_PID": str(os.getpid()),
               "PYTHONUNBUFFERED": "1", **owner_env(job)}
        with open(log_path, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "engine.jobs.child", str(job_id)],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True)
        outcome = None
        try:
            self.store.set_job_pid(job_id, proc.pid)
            while proc.poll() is None:
                try:
                    proc.wait(timeout=self.heartbeat_s)
                    break
                except subprocess.TimeoutExpired:
                    pass
                try:
                    cancel = self.store.heartbeat(self.id, job_id)
                except StoreError as e:  # e.g. locked for long: keep the job running, try again
                    log.warning("heartbeat failed: %s", e)
                    cancel = False
                if cancel or self.stop.is_set():
                    outcome = "cancelled" if cancel else "interrupted"
                    _stop_child(proc)
        finally:
            if proc.poll() is None:  # the worker itself is being torn down
                _stop_child(proc)
        self._record_end(job_id, proc.returncode, outcome, log_path)

    def _record_end(self, job_id: int, rc: int, outcome: str | None, log_path: Path) -> None:
        if outcome == "cancelled":
            self.store.finish(job_id, "cancelled", error="Cancelled on request; its process was stopped.")
        elif outcome == "interrupted":
            self.store.finish(job_id, "interrupted",
                              error="The worker was stopped while this job was running. Start it again to rerun it.")
        elif rc != 0:
            # Only if the child did not record its own failure (crash, os._exit, OOM kill).
            tail = ["--- last lines of the job's output ---"] + _tail(log_path, CRASH_LOG_LINES)
            self.store.finish(job_id, "failed", error=describe_exit(rc), log_line=tail)
        else:
            self.store.finish(job_id, "failed", error="The job's process ended without reporting a result.")
        log.info("job %s ended: %s", job_id, (self.store.get_job(job_id) or {}).get("status"))


def run_worker(store_url: str | None = None, poll_s: float = 0.5, once: bool = False,
               stop_event: threading.Event | None = None, single: bool = False,
               parent_pid: int | None = None, heartbeat_s: float = HEARTBEAT_S,
               stale_after_s: float = STALE_AFTER_S) -> int:
    """Run queued jobs until stopped; returns how many jobs it ran.

    once: return when the queue is empty. single: exit at once if another single worker holds this
    store's lock. parent_pid: return (between jobs) once that process is no longer our parent.
    """
    from engine.store import open_store

    url = store_url or default_store_url()
    stop = stop_event or threading.Event()
    lock = _Lock(worker_lock_path(url)).acquire() if single else None
    if single and lock is None:
        log.info("another worker is already running for this store (pid %s); exiting", worker_running(url))
        return 0
    store = open_store(url)
    worker = _Worker(store, url, stop, heartbeat_s)
    ran = 0
    try:
        store.register_worker(worker.id, os.getpid(), worker.host)
        for job_id in store.mark_interrupted_stale(stale_after_s):
            log.info("job %s was left running by a worker that is gone: marked interrupted", job_id)
        last_sweep = time.monotonic()
        while not stop.is_set():
            try:
                job = store.claim_next(worker.id, os.getpid(), worker.host)
                if job is not None:
                    worker.run_job(job)
                    ran += 1
                    continue
                if once or (parent_pid and os.getppid() != parent_pid):
                    break
                store.heartbeat(worker.id)
                if time.monotonic() - last_sweep > stale_after_s:  # other workers' orphaned jobs
                    store.mark_interrupted_stale(stale_after_s)
                    last_sweep = time.monotonic()
            except StoreError as e:  # e.g. the database stayed locked for long: keep serving, retry later
                log.warning("%s", e)
                stop.wait(max(poll_s, 2.0))
                continue
            stop.wait(poll_s)
    finally:
        try:
            store.worker_stopped(worker.id)
        finally:
            store.close()
            if lock is not None:
                lock.release()
    return ran


def start_worker_process(store_url: str | None = None, exit_with_parent: bool = True,
                         log_file: Path | None = None) -> subprocess.Popen | None:
    """Start a background single-instance worker; None if one is already alive for this store.

    exit_with_parent: the worker leaves (after finishing its current job) once this process is gone.
    Its output goes to $TLAB_HOME/worker.log unless `log_file` is given.
    """
    url = store_url or default_store_url()
    if worker_running(url) is not None:
        return None
    if not hasattr(os, "killpg"):  # no lock file support: trust the workers table
        from engine.store import open_store

        if open_store(url).list_workers(alive_within_s=STALE_AFTER_S):
            return None
    cmd = [sys.executable, "-m", "engine.jobs.worker", "--single"]
    if exit_with_parent:
        cmd += ["--parent-pid", str(os.getpid())]
    env = {**os.environ, "TLAB_STORE_URL": url}  # not argv: a password would show in `ps`
    with open(log_file or tlab_home() / "worker.log", "ab") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tlab worker", description="Run queued Tradeoff Lab jobs.")
    parser.add_argument("--store-url", default=None, help="store URL (default: $TLAB_STORE_URL or $TLAB_HOME/tlab.db)")
    parser.add_argument("--once", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--single", action="store_true", help="exit if a worker already serves this store")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit (between jobs) when this process ends")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between queue checks")
    parser.add_argument("--executor", choices=["local", "ray"], default=os.environ.get("TLAB_EXECUTOR") or "local",
                        help="where jobs run: child processes here (default) or a Ray cluster ($TLAB_EXECUTOR)")
    parser.add_argument("--ray-address", default=None, help="Ray cluster HOST:PORT (default: $RAY_ADDRESS)")
    parser.add_argument("--ray-gpu-type", default=None,
                        help="Ray accelerator type GPU parts ask for, e.g. H100 (default: $TLAB_RAY_GPU_TYPE, any)")
    args = parser.parse_args(argv)
    if not (0.05 <= args.poll <= 3600):  # also false for NaN
        print(f"error: --poll must be between 0.05 and 3600 seconds, got {args.poll}.", file=sys.stderr)
        return 2
    if args.executor not in ("local", "ray"):  # a default from $TLAB_EXECUTOR skips argparse's choices
        print(f"error: TLAB_EXECUTOR={args.executor!r} is not an executor; use local or ray.", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker[%(process)d] %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if args.executor == "ray":
            return _run_ray(args, stop)
        run_worker(args.store_url, poll_s=args.poll, once=args.once, stop_event=stop, single=args.single,
                   parent_pid=args.parent_pid)
    except TlabError as e:  # a store it cannot open, a bad setting: said plainly, nothing half-done
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _run_ray(args, stop: threading.Event) -> int:
    """`--executor ray`: the coordinator of engine.jobs.ray_executor, with the same single-instance lock."""
    from engine.jobs.ray_executor import run_ray_worker

    url = args.store_url or default_store_url()
    lock = _Lock(worker_lock_path(url)).acquire() if args.single else None
    if args.single and lock is None:
        log.info("another worker is already running for this store (pid %s); exiting", worker_running(url))
        return 0
    try:
        run_ray_worker(url, args.ray_address, poll_s=args.poll, once=args.once, stop_event=stop,
                       gpu_type=args.ray_gpu_type, parent_pid=args.parent_pid)
    finally:
        if lock is not None:
            lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
