"""Runs ONE job in its own process: `python -m engine.jobs.child <job_id> [<store_url>]`.

The worker starts this so that an out-of-memory kill or a segfault ends only this job. The store URL
comes from argv or $TLAB_STORE_URL (the worker uses the environment, so a password never shows in
`ps`). Progress, log lines and the final status are written straight to the store; stdout/stderr go
to the job's full log file (the worker redirects them), including a Python traceback on a crash.
"""

import faulthandler
import os
import sys
import threading
import time
import traceback

from engine.errors import TlabError

PROGRESS_MIN_INTERVAL_S = 0.25  # progress-only updates are batched so a chatty job cannot flood the store


def owner_env(job: dict) -> dict[str, str]:
    """The environment that tells a job's process who started it (engine.auth.OWNER_ENV): the results
    it saves inherit the job's owner. Taken from the job row, never from its payload."""
    from engine.auth import DEFAULT_OWNER, OWNER_ENV

    return {OWNER_ENV: str(job.get("owner") or DEFAULT_OWNER)}


def stage_line(fraction: float, stage: str) -> str:
    """A stage as a log line: '[ 35%] calibrating INT8 SmoothQuant'."""
    return f"[{min(1.0, max(0.0, float(fraction))):4.0%}] {stage}"


class ProgressReporter:
    """The `progress(fraction, stage, log=None)` callable given to a job function."""

    def __init__(self, store, job_id: int):
        self.store, self.job_id = store, job_id
        self._fraction = self._stage = None
        self._lines: list[str] = []
        self._last_write = 0.0
        self._last_stage = None
        self._logged_stage, self._known_fraction = None, 0.0

    def __call__(self, fraction: float | None = None, stage: str | None = None, log: str | None = None) -> None:
        if fraction is not None:
            self._fraction = self._known_fraction = fraction
        if stage is not None:
            self._stage = stage
        if stage is not None and stage != self._logged_stage:  # the log tells the job's story, stage by stage
            self._logged_stage = stage
            self._log(stage_line(self._known_fraction, stage))
        if log is not None:
            self._log(str(log))
        stage_changed = stage is not None and stage != self._last_stage
        if stage_changed or time.monotonic() - self._last_write >= PROGRESS_MIN_INTERVAL_S:
            self.flush()

    def _log(self, line: str) -> None:
        print(line, flush=True)  # the full log file keeps every line
        self._lines.append(line)

    def unsent_lines(self) -> list[str]:
        """Log lines not yet written to the store (the job failed before the next flush)."""
        return list(self._lines)

    def flush(self) -> None:
        if self._fraction is None and self._stage is None and not self._lines:
            return
        still_running = self.store.update_progress(self.job_id, self._fraction, self._stage, self._lines or None)
        self._last_stage = self._stage if self._stage is not None else self._last_stage
        self._fraction = self._stage = None
        self._lines = []
        self._last_write = time.monotonic()
        if not still_running:  # cancelled or interrupted meanwhile: stop working
            print(f"Job {self.job_id} is no longer running in the store; stopping.", flush=True)
            raise SystemExit(0)


def _exit_when_orphaned(parent_pid: int) -> None:
    """If the worker dies (even by SIGKILL) this process is re-parented: stop, the job is orphaned."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    print("The worker that started this job is gone; stopping the job.", flush=True)
    os._exit(70)


def _result_ids(fn: str, returned) -> list[str]:
    """A job function returns None, one result id, or a list of them."""
    if returned is None:
        return []
    if isinstance(returned, str):
        return [returned]
    if isinstance(returned, (list, tuple)) and all(isinstance(r, str) for r in returned):
        return list(returned)
    raise TlabError(f"Job function {fn} returned {type(returned).__name__}; it must return the ids of the "
                    "results it saved (a list of strings) or None.")


def run_job(job_id: int, store_url: str | None) -> int:
    from engine.jobs.functions import resolve_job_fn
    from engine.store import open_store

    store = open_store(store_url)
    if store_url:  # the job's own writes go to the store it was queued in, whatever its payload says
        os.environ["TLAB_STORE_URL"] = store_url
    job = store.get_job(job_id)
    if job is None or job["status"] != "running":
        print(f"Job {job_id} is not running (status: {job and job['status']}); nothing to do.", flush=True)
        return 0
    os.environ.update(owner_env(job))  # the row is the authority, whoever started this process
    progress = ProgressReporter(store, job_id)
    try:
        fn = resolve_job_fn(job["fn"])
        returned = fn(job["payload"], progress)
        ids = _result_ids(job["fn"], returned)
        progress.flush()
        store.finish(job_id, "done", result_ids=ids, log_line=f"done: {len(ids)} result(s)")
        return 0
    except TlabError as e:
        print(f"Failed: {e}", file=sys.stderr, flush=True)
        store.finish(job_id, "failed", error=str(e), log_line=progress.unsent_lines())
        return 1
    except Exception as e:  # noqa: BLE001 - any bug in a job becomes a failed job, with its traceback
        if not _out_of_memory(e):
            tb = traceback.format_exc()
            print(tb, file=sys.stderr, flush=True)
            store.finish(job_id, "failed", error=f"{type(e).__name__}: {e}", log_line=progress.unsent_lines() + [tb])
            return 1
    # Out of memory: reported only here, once the exception (whose frames still hold the memory) is gone.
    print(f"Failed: {OUT_OF_MEMORY}", file=sys.stderr, flush=True)
    store.finish(job_id, "failed", error=OUT_OF_MEMORY, log_line=progress.unsent_lines())
    return 1


OUT_OF_MEMORY = ("The job ran out of memory (an allocation failed), so it was stopped; other jobs go on. Run it "
                 "with fewer calibration sequences or evaluation tokens, fewer recipes at once, a smaller model, "
                 "or on a machine with more memory.")


def _out_of_memory(e: BaseException) -> bool:
    """Python's MemoryError, or torch's CPU/CUDA allocation failures (RuntimeError subclasses)."""
    text = str(e).lower()
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or not argv[0].isdigit():
        print("usage: python -m engine.jobs.child <job_id> [<store_url>]", file=sys.stderr)
        return 2
    faulthandler.enable()  # a segfault prints the Python stack into the job's log file
    # The worker's pid comes from the environment: if the worker died while this process was still
    # starting, os.getppid() would already name the new parent.
    worker_pid = int(os.environ.get("TLAB_WORKER_PID") or os.getppid())
    threading.Thread(target=_exit_when_orphaned, args=(worker_pid,), daemon=True).start()
    return run_job(int(argv[0]), argv[1] if len(argv) > 1 else os.environ.get("TLAB_STORE_URL"))


if __name__ == "__main__":
    sys.exit(main())
