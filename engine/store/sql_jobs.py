"""The job queue half of SqlStore: jobs and workers tables, same database as the results."""

import json
import socket
from collections.abc import Callable

import sqlalchemy as sa

from engine.auth import OWNER_MAX, NotPermitted, current_owner, may_manage
from engine.errors import StoreError, TlabError
from engine.store import records as rec
from engine.store.base import (
    FINISHED_STATUSES,
    JOB_STATUSES,
    LOG_MAX_LINE_CHARS,
    LOG_MAX_LINES,
)
from engine.store.schema import jobs, workers

_TIME_FIELDS = ("heartbeat_at", "created_at", "started_at", "finished_at")


def _job_dict(row) -> dict:
    job = dict(row)
    for f in _TIME_FIELDS:
        job[f] = rec.to_iso(job[f])
    job["cancel_requested"] = bool(job["cancel_requested"])
    return job


def _lines(log_line) -> list[str]:
    if log_line is None:
        return []
    items = [log_line] if isinstance(log_line, str) else list(log_line)
    out = []
    for item in items:
        for line in str(item).splitlines() or [""]:
            out.append(line if len(line) <= LOG_MAX_LINE_CHARS else line[:LOG_MAX_LINE_CHARS] + " [...]")
    return out


def append_log(log: str, new_lines: list[str]) -> str:
    """The log with new lines added, keeping only the last LOG_MAX_LINES lines."""
    lines = (log.split("\n") if log else []) + new_lines
    return "\n".join(lines[-LOG_MAX_LINES:])


class SqlJobsMixin:
    def enqueue(self, fn: str, payload: dict, title: str, owner: str | None = None) -> int:
        from engine.store.job_functions import check_job_fn

        check_job_fn(fn)
        owner = current_owner() if owner is None else str(owner)[:OWNER_MAX]
        if not isinstance(payload, dict):
            raise TlabError(f"A job payload must be a dict, got {type(payload).__name__}.")
        try:
            json.dumps(payload)
        except (TypeError, ValueError) as e:
            raise TlabError(f"The job payload cannot be saved as JSON ({e}).") from None
        with self._tx(write=True) as conn:
            res = conn.execute(sa.insert(jobs).values({  # a dict: "fn" is also a parameter of .values()
                "fn": fn, "title": str(title)[:300], "payload": payload, "status": "queued", "progress": 0.0,
                "stage": "waiting for a worker", "log": "", "result_ids": [], "cancel_requested": False,
                "created_at": rec.now(), "owner": owner}))
            self._bump(conn, "jobs")
            return res.inserted_primary_key[0]

    def get_job(self, job_id: int) -> dict | None:
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return _job_dict(row) if row else None

    def list_jobs(self, status=None, limit=None) -> list[dict]:
        query = sa.select(jobs).order_by(jobs.c.id.desc())
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            unknown = set(statuses) - set(JOB_STATUSES)
            if unknown:
                raise StoreError(f"Unknown job status {sorted(unknown)}; valid: {', '.join(JOB_STATUSES)}.")
            query = query.where(jobs.c.status.in_(statuses))
        if limit is not None:
            query = query.limit(limit)
        with self._tx(write=False) as conn:
            return [_job_dict(r) for r in conn.execute(query).mappings().all()]

    def request_cancel(self, job_id: int, stale_after_s: float = 30.0, *, by: str | None = None,
                       admin: bool = False) -> str | None:
        with self._tx(write=True) as conn:
            row = conn.execute(sa.select(jobs.c.status, jobs.c.heartbeat_at, jobs.c.owner)
                               .where(jobs.c.id == job_id)).first()
            if row is not None and not may_manage(row.owner, by, admin):
                raise NotPermitted(f"Job {job_id} was started by {row.owner}; only they or an administrator "
                                   "can cancel it.")
            status = row.status if row else None
            t = rec.now()
            if status == "running" and (row.heartbeat_at is None or t - row.heartbeat_at > stale_after_s):
                # No worker has reported for this job in a while: nobody would act on the flag.
                conn.execute(sa.update(jobs).where(jobs.c.id == job_id, jobs.c.status == "running").values(
                    status="cancelled", cancel_requested=True, finished_at=t,
                    error="Cancelled; its worker had already stopped reporting."))
                status = "cancelled"
            elif status == "queued":
                conn.execute(sa.update(jobs).where(jobs.c.id == job_id, jobs.c.status == "queued").values(
                    status="cancelled", cancel_requested=True, finished_at=t,
                    error="Cancelled before it started."))
                status = "cancelled"
            elif status == "running":
                conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(cancel_requested=True))
            else:
                return status
            self._bump(conn, "jobs")
            return status

    def delete_finished_jobs(self, older_than_s: float = 0.0) -> int:
        with self._tx(write=True) as conn:
            gone = conn.execute(sa.delete(jobs).where(jobs.c.status.in_(FINISHED_STATUSES),
                                                      jobs.c.finished_at <= rec.now() - older_than_s)).rowcount
            if gone:
                self._bump(conn, "jobs")
        return gone

    def claim_next(self, worker_id: str, worker_pid: int | None = None, host: str | None = None) -> dict | None:
        for _ in range(20):  # another worker may take our candidate between SELECT and UPDATE
            with self._tx(write=True) as conn:
                job_id = conn.execute(sa.select(jobs.c.id).where(jobs.c.status == "queued")
                                      .order_by(jobs.c.id).limit(1)).scalar()
                if job_id is None:
                    return None
                t = rec.now()
                claimed = conn.execute(sa.update(jobs).where(jobs.c.id == job_id, jobs.c.status == "queued").values(
                    status="running", worker_id=worker_id, worker_pid=worker_pid, host=host,
                    started_at=t, heartbeat_at=t, stage="starting")).rowcount == 1
                if claimed:
                    self._bump(conn, "jobs")
                    return _job_dict(conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().one())
        return None

    def set_job_pid(self, job_id: int, pid: int) -> None:
        with self._tx(write=True) as conn:
            conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(pid=pid))

    def heartbeat(self, worker_id: str, job_id: int | None = None) -> bool:
        t = rec.now()
        with self._tx(write=True) as conn:
            conn.execute(sa.update(workers).where(workers.c.id == worker_id)
                         .values(heartbeat_at=t, current_job_id=job_id))
            if job_id is None:
                return False
            conn.execute(sa.update(jobs).where(jobs.c.id == job_id, jobs.c.status == "running")
                         .values(heartbeat_at=t))
            return bool(conn.execute(sa.select(jobs.c.cancel_requested).where(jobs.c.id == job_id)).scalar())

    def update_progress(self, job_id, progress=None, stage=None, log_line=None) -> bool:
        values = {}
        if progress is not None:
            values["progress"] = min(1.0, max(0.0, float(progress)))
        if stage is not None:
            values["stage"] = str(stage)[:300]
        new_lines = _lines(log_line)
        with self._tx(write=True) as conn:
            row = conn.execute(sa.select(jobs.c.status, jobs.c.log).where(jobs.c.id == job_id)).first()
            if row is None or row.status != "running":
                return False
            if new_lines:
                values["log"] = append_log(row.log, new_lines)
            if values:
                conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(**values))
                self._bump(conn, "jobs")
            return True

    def finish(self, job_id, status, error=None, result_ids=None, log_line=None, only_if=("running",)) -> bool:
        if status not in FINISHED_STATUSES:
            raise StoreError(f"'{status}' is not a final job status; use one of {', '.join(FINISHED_STATUSES)}.")
        with self._tx(write=True) as conn:
            row = conn.execute(sa.select(jobs.c.status, jobs.c.log, jobs.c.result_ids)
                               .where(jobs.c.id == job_id)).first()
            if row is None or row.status not in tuple(only_if):
                return False
            values = {"status": status, "finished_at": rec.now(), "error": error}
            if status == "done":
                values.update(progress=1.0, stage="done")
            if result_ids is not None:
                values["result_ids"] = list(row.result_ids or []) + [str(r) for r in result_ids]
            new_lines = _lines(log_line)
            if new_lines:
                values["log"] = append_log(row.log, new_lines)
            done = conn.execute(sa.update(jobs).where(jobs.c.id == job_id, jobs.c.status == row.status)
                                .values(**values)).rowcount == 1
            if done:
                self._bump(conn, "jobs")
            return done

    def mark_interrupted_stale(self, stale_after_s: float = 30.0, pid_alive: Callable[[int], bool] | None = None,
                               host: str | None = None) -> list[int]:
        if pid_alive is None:
            from engine.system import pid_alive
        host = host or socket.gethostname()
        t = rec.now()
        marked = []
        with self._tx(write=True) as conn:
            running = conn.execute(sa.select(jobs.c.id, jobs.c.worker_pid, jobs.c.host, jobs.c.heartbeat_at)
                                   .where(jobs.c.status == "running")).all()
            for job in running:
                if job.host == host and job.worker_pid and not pid_alive(job.worker_pid):
                    why = (f"The worker running this job (process {job.worker_pid}) stopped before the job "
                           "finished, so the job was interrupted. Start it again to rerun it.")
                elif job.heartbeat_at is None or t - job.heartbeat_at > stale_after_s:
                    why = (f"The worker running this job stopped reporting (no heartbeat for over "
                           f"{stale_after_s:.0f} s), so the job was interrupted. Start it again to rerun it.")
                else:
                    continue
                if conn.execute(sa.update(jobs).where(jobs.c.id == job.id, jobs.c.status == "running").values(
                        status="interrupted", error=why, finished_at=t)).rowcount:
                    marked.append(job.id)
            for w in conn.execute(sa.select(workers.c.id, workers.c.pid, workers.c.host)
                                  .where(workers.c.stopped_at.is_(None))).all():
                if w.host == host and not pid_alive(w.pid):
                    conn.execute(sa.update(workers).where(workers.c.id == w.id).values(stopped_at=t))
            if marked:
                self._bump(conn, "jobs")
        return marked

    def register_worker(self, worker_id: str, pid: int, host: str) -> None:
        t = rec.now()
        with self._tx(write=True) as conn:
            conn.execute(sa.delete(workers).where(workers.c.id == worker_id))
            conn.execute(sa.insert(workers).values(id=worker_id, pid=pid, host=host, started_at=t, heartbeat_at=t))

    def worker_stopped(self, worker_id: str) -> None:
        with self._tx(write=True) as conn:
            conn.execute(sa.update(workers).where(workers.c.id == worker_id)
                         .values(stopped_at=rec.now(), current_job_id=None))

    def list_workers(self, alive_within_s: float | None = None) -> list[dict]:
        query = sa.select(workers).where(workers.c.stopped_at.is_(None)).order_by(workers.c.started_at)
        if alive_within_s is not None:
            query = query.where(workers.c.heartbeat_at >= rec.now() - alive_within_s)
        with self._tx(write=False) as conn:
            rows = conn.execute(query).mappings().all()
        return [{**r, **{f: rec.to_iso(r[f]) for f in ("started_at", "heartbeat_at", "stopped_at")}} for r in rows]
