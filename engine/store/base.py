"""The store protocol: results of experiments, and the job queue that produces them.

One implementation today (`SqlStore`, any SQLAlchemy URL); `open_store` picks it from the URL, so a
different backend only has to implement these methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from engine.store.entities import Result

if TYPE_CHECKING:  # pandas is imported only when a frame is built
    import pandas as pd

JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
FINISHED_STATUSES = ("done", "failed", "cancelled", "interrupted")
LOG_MAX_LINES = 200  # a job keeps the tail of its log; the full log is in $TLAB_HOME/jobs/<id>.log
LOG_MAX_LINE_CHARS = 2000


class Store(ABC):
    url: str  # full URL (may contain a password: never print it, use `shown_url`)
    shown_url: str

    # --- results ---------------------------------------------------------------------------
    @abstractmethod
    def ensure_experiment(self, name: str, model: str, settings: dict | None = None) -> int:
        """Id of the experiment `name`, created if missing (an existing one is left as is)."""

    @abstractmethod
    def list_experiments(self) -> list[dict]: ...

    @abstractmethod
    def save_result(self, record: Result | dict) -> str:
        """Insert or replace the result with record.id, atomically (a dict is validated the same
        way). Returns the id."""

    @abstractmethod
    def save_results(self, records: Iterable[Result | dict]) -> list[str]:
        """Save many results in one transaction (all or nothing)."""

    @abstractmethod
    def get_result(self, result_id: str) -> Result | None: ...

    @abstractmethod
    def has_result(self, result_id: str) -> bool: ...

    def has_finished_result(self, result_id: str) -> bool:
        """A result to reuse: stored by a sweep that finished (not one it left "partial" when stopped).
        Raises records.UnreadableResult for a stored result that cannot be read back, or that is
        "done" without a single metric (its metric rows lost): either must be computed again."""
        if not self.has_result(result_id):
            return False
        result = self.get_result(result_id)
        if result is None or result.status != "done":
            return False
        if not result.metrics:  # every sweep stores its accuracy metrics with the result
            from engine.store.records import UnreadableResult

            raise UnreadableResult(result_id, "it is marked done but its metric rows are missing")
        return True

    @abstractmethod
    def list_results(self, model: str | None = None, precision: str | None = None,
                     sparsity: str | None = None, kv_cache: str | None = None,
                     experiment: str | None = None, status: str | None = None,
                     ids: Iterable[str] | None = None) -> list[Result]:
        """Full results, oldest first, filtered by the given fields."""

    @abstractmethod
    def results_frame(self) -> pd.DataFrame:
        """One row per result with metric values as columns (see records.FRAME_COLUMNS)."""

    @abstractmethod
    def delete_result(self, result_id: str) -> bool: ...

    @abstractmethod
    def change_token(self, scope: str | None = None) -> str:
        """Changes whenever results ("results"), jobs ("jobs") or either (None) change."""

    # --- jobs ------------------------------------------------------------------------------
    @abstractmethod
    def enqueue(self, fn: str, payload: dict, title: str, owner: str | None = None) -> int:
        """Queue a job for `owner` (default engine.auth.current_owner(): "local" without sign-in)."""

    @abstractmethod
    def get_job(self, job_id: int) -> dict | None: ...

    @abstractmethod
    def list_jobs(self, status: str | Iterable[str] | None = None, limit: int | None = None) -> list[dict]:
        """Newest first."""

    @abstractmethod
    def request_cancel(self, job_id: int, stale_after_s: float = 30.0, *, by: str | None = None,
                       admin: bool = False) -> str | None:
        """Queued -> cancelled now; running -> flagged for its worker to stop (or cancelled now if no
        worker has reported on it for `stale_after_s`). Returns the status after the call (None: no
        such job). With `by` (a signed-in user who is not an administrator) only that user's own jobs
        may be cancelled: engine.auth.NotPermitted otherwise."""

    @abstractmethod
    def delete_finished_jobs(self, older_than_s: float = 0.0) -> int:
        """Forget jobs that ended at least `older_than_s` ago; returns how many."""

    @abstractmethod
    def claim_next(self, worker_id: str, worker_pid: int | None = None, host: str | None = None) -> dict | None:
        """Atomically move the oldest queued job to running for this worker; None when none."""

    @abstractmethod
    def set_job_pid(self, job_id: int, pid: int) -> None: ...

    @abstractmethod
    def heartbeat(self, worker_id: str, job_id: int | None = None) -> bool:
        """Record that the worker (and its job) are alive; True if the job's cancel was requested."""

    @abstractmethod
    def update_progress(self, job_id: int, progress: float | None = None, stage: str | None = None,
                        log_line: str | Iterable[str] | None = None) -> bool:
        """Update a running job; False (and nothing written) if it is no longer running."""

    @abstractmethod
    def finish(self, job_id: int, status: str, error: str | None = None,
               result_ids: Iterable[str] | None = None, log_line: str | Iterable[str] | None = None,
               only_if: Iterable[str] = ("running",)) -> bool:
        """Set a final status if the job is in one of `only_if`; False if it was not."""

    @abstractmethod
    def mark_interrupted_stale(self, stale_after_s: float = 30.0,
                               pid_alive: Callable[[int], bool] | None = None,
                               host: str | None = None) -> list[int]:
        """Mark running jobs whose worker is gone as interrupted: heartbeat older than
        `stale_after_s`, or (same `host`) worker pid not alive. Returns their ids."""

    @abstractmethod
    def register_worker(self, worker_id: str, pid: int, host: str) -> None: ...

    @abstractmethod
    def worker_stopped(self, worker_id: str) -> None: ...

    @abstractmethod
    def list_workers(self, alive_within_s: float | None = None) -> list[dict]:
        """Workers not stopped, optionally only those with a heartbeat in the last `alive_within_s`."""

    # --- users (password sign-in; engine.auth) --------------------------------------------------
    @abstractmethod
    def add_user(self, name: str, password_hash: str | None, is_admin: bool = False,
                 replace: bool = False) -> None: ...

    @abstractmethod
    def get_user(self, name: str) -> dict | None: ...

    @abstractmethod
    def list_users(self) -> list[dict]: ...

    @abstractmethod
    def remove_user(self, name: str) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...
