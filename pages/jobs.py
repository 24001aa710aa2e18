"""Jobs: what is queued, running (live), done, failed, cancelled or interrupted; cancel any that has not ended."""

import socket
from datetime import datetime, timezone

import streamlit as st

from app import auth, nav, state
from engine import devices
from engine.system import pid_alive
from engine.jobs.worker import STALE_AFTER_S
from engine.time_estimate import format_remaining, job_estimate_s, remaining_seconds

REFRESH_S = 2.0
LOG_TAIL_LINES = 15
STATUS_ICONS = {"queued": ":material/schedule:", "running": ":material/autorenew:", "done": ":material/check_circle:",
                "failed": ":material/error:", "cancelled": ":material/block:", "interrupted": ":material/warning:"}


def _seconds_since(iso: str | None, until: str | None = None) -> float | None:
    if not iso:
        return None
    end = datetime.fromisoformat(until) if until else datetime.now(timezone.utc)
    return max(0.0, (end - datetime.fromisoformat(iso)).total_seconds())


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _log_tail(job: dict, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join((job.get("log") or "").split("\n")[-lines:])


def _time_left(job: dict, elapsed: float | None) -> str:
    """'about 4 min left' from the sweep's up-front estimate blended with its observed rate, or ''."""
    estimate = job_estimate_s(job, state.timing_history(), devices.device_name(state.device_report()[0]))
    return format_remaining(remaining_seconds(job.get("progress"), elapsed, estimate))


def _cancel(job_id: int) -> None:
    state.cancel_job(job_id, "")


def _rerun(job: dict) -> None:
    """Queue the job again as it was (a sweep reuses every recipe that already finished)."""
    if not auth.may_manage(job):
        st.toast(f"Job {job['id']} was started by {job.get('owner')}; only they or an administrator can re-run it.")
        return
    new_id = state.queue_job(job["fn"], job["payload"], job["title"])
    st.toast(f"Job {job['id']} queued again as #{new_id}.")


def _owner(job: dict) -> str:
    """' · by alice' when sign-in is on (everything is "local" otherwise)."""
    return f" · by {job.get('owner')}" if auth.current_user() is not None else ""


def _cancel_button(job: dict) -> None:
    if not auth.may_manage(job):
        st.caption(f"started by {job.get('owner')}")
        return
    st.button("Cancel", key=f"cancel_{job['id']}", on_click=_cancel, args=(job["id"],),
              help="Stop this job. A running job's process is stopped.")


def _running(job: dict) -> None:
    with st.container(border=True):
        head, button = st.columns([5, 1])
        head.markdown(f"**{STATUS_ICONS['running']} #{job['id']} {job['title']}**")
        with button:
            if job["cancel_requested"]:
                st.caption("stopping...")
            else:
                _cancel_button(job)
        progress = float(job.get("progress") or 0.0)
        st.progress(min(1.0, max(0.0, progress)), text=f"{job.get('stage') or 'working'} ({progress:.0%})")
        elapsed = _seconds_since(job.get("started_at"))
        left = _time_left(job, elapsed)
        st.caption(f"Running for {_duration(elapsed)}" + (f" · {left}" if left else "") + _owner(job))
        tail = _log_tail(job)
        if tail:
            st.code(tail, language=None)


def _queued(job: dict) -> None:
    with st.container(border=True):
        head, button = st.columns([5, 1])
        head.markdown(f"**{STATUS_ICONS['queued']} #{job['id']} {job['title']}**  \n"
                      f"Waiting for the worker (queued {_duration(_seconds_since(job.get('created_at')))} ago)"
                      f"{_owner(job)}.")
        with button:
            _cancel_button(job)


def _finished(job: dict) -> None:
    status = job["status"]
    took = _duration(_seconds_since(job.get("started_at"), job.get("finished_at")))
    with st.container(border=True):
        head, button = st.columns([5, 1])
        head.markdown(f"**{STATUS_ICONS.get(status, '')} #{job['id']} {job['title']}**: {status}"
                      + (f" after {took}" if job.get("started_at") else "") + _owner(job))
        if status in ("failed", "cancelled", "interrupted") and auth.may_manage(job):
            button.button("Run again", key=f"rerun_{job['id']}", on_click=_rerun, args=(job,),
                          help="Queue this job again; results that already finished are reused, not recomputed.")
        if status == "done":
            n = len(job.get("result_ids") or [])
            st.caption(f"{n} result(s) saved.")
        elif job.get("error"):
            (st.error if status == "failed" else st.warning)(job["error"])
        if job.get("log"):
            with st.expander("Log"):
                st.code(_log_tail(job, 60), language=None)


def _orphaned(job: dict) -> bool:
    """A running job whose worker process is gone (this machine) or silent for STALE_AFTER_S."""
    if job["status"] != "running":
        return False
    if job.get("host") == socket.gethostname() and job.get("worker_pid") and not pid_alive(job["worker_pid"]):
        return True
    silent = _seconds_since(job.get("heartbeat_at"))
    return silent is None or silent > STALE_AFTER_S


@st.fragment(run_every=REFRESH_S)
def job_board() -> None:
    store = state.store()
    jobs = store.list_jobs(limit=200)
    if any(_orphaned(j) for j in jobs):  # a job whose worker died is marked interrupted, not left spinning
        store.mark_interrupted_stale(STALE_AFTER_S)
        jobs = store.list_jobs(limit=200)
    by_status = {s: [j for j in jobs if j["status"] == s] for s in STATUS_ICONS}
    counts = " · ".join(f"{STATUS_ICONS[s]} {s}: {len(v)}" for s, v in by_status.items() if v)
    st.caption(counts or "No jobs yet.")
    if not jobs:
        st.info("No jobs yet. Queue a sweep on the Experiment page, or run the demo from the start page.")
        st.page_link(nav.page("experiment"), label="Build a sweep", icon=":material/science:")
        st.page_link(nav.page("home"), label="Run the demo", icon=":material/flag:")
        return
    if (by_status["queued"] or by_status["running"]) and not state.worker_alive():
        st.warning("No worker is running, so these jobs wait. Press **Start worker** in the sidebar, "
                   "or run `tlab worker` in a terminal.")
    for job in by_status["running"]:
        _running(job)
    for job in reversed(by_status["queued"]):  # oldest first: the order they will run in
        _queued(job)
    finished = [j for j in jobs if j["status"] in ("done", "failed", "cancelled", "interrupted")]
    if finished:
        st.subheader("Finished")
        if by_status["done"]:
            st.page_link(nav.page("results"), label="See the results", icon=":material/scatter_plot:")
        for job in finished:
            _finished(job)


st.title("Jobs")
st.caption("Sweeps run one at a time in a background worker, each in its own process; this page refreshes "
           "itself every few seconds. Closing the browser does not stop them.")
job_board()
with st.expander("Housekeeping"):
    if not auth.is_admin():  # it forgets everyone's finished jobs
        st.caption("Only an administrator can forget finished jobs.")
    elif st.button("Forget finished jobs", key="forget_finished",
                 help="Removes done, failed, cancelled and interrupted jobs from this list (results stay)."):
        gone = state.store().delete_finished_jobs()
        st.toast(f"Removed {gone} finished job(s).")
        st.rerun()
