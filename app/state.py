"""Shared, cached access to the store, the device and the background worker for every page.

Reads are cached with `st.cache_data` keyed on the store's change token, so a page rerun that finds
nothing new costs one tiny query.
"""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from app import auth
from engine.paths import default_store_url
from engine.store import Store, open_store

SWEEP_FN = "engine.pipeline:run_sweep_job"


@st.cache_resource(show_spinner=False)
def _store_for(url: str) -> Store:
    return open_store(url)


def store() -> Store:
    """The store for $TLAB_STORE_URL / $TLAB_HOME (one connection pool per URL per server)."""
    return _store_for(default_store_url())


@st.cache_data(show_spinner=False, max_entries=8)
def _results_frame(url: str, token: str) -> pd.DataFrame:
    return _store_for(url).results_frame()


def results_frame() -> pd.DataFrame:
    """All results as a frame (see engine.store.records.FRAME_COLUMNS plus one column per metric)."""
    s = store()
    return _results_frame(s.url, s.change_token("results"))


@st.cache_data(show_spinner=False, max_entries=4)
def _timing_history(url: str, token: str) -> list[dict]:
    """Timings and specs of earlier results (for the time estimate), without the metrics."""
    return [{"timings": r.timings, "spec": r.spec, "device": r.device} for r in _store_for(url).list_results()]


def timing_history() -> list[dict]:
    s = store()
    return _timing_history(s.url, s.change_token("results"))


@st.cache_data(show_spinner=False, max_entries=4)
def _result_kinds(url: str, token: str) -> dict[str, str]:
    return {r.id: (r.spec or {}).get("kind") or "causal_lm" for r in _store_for(url).list_results()}


def result_kinds() -> dict[str, str]:
    """Each result's model kind (registry.MODEL_KINDS name) from its spec, by result id."""
    s = store()
    return _result_kinds(s.url, s.change_token("results"))


@st.cache_resource(show_spinner=False)
def device_report():
    """(gpus, engine checks) for this machine; probed once per server process."""
    from engine import devices

    gpus = devices.detect_gpus()
    return gpus, devices.engine_checks(gpus)


@st.cache_resource(show_spinner=False)
def precision_choices(backend: str | None, sparsity: str = "none"):
    from engine import devices

    return devices.precision_choices(device_report()[0], backend, sparsity)


def worker_enabled() -> bool:
    """The app starts a background worker unless TLAB_APP_WORKER=0 (tests, or a worker run elsewhere)."""
    return os.environ.get("TLAB_APP_WORKER", "1") != "0"


def ensure_worker() -> bool:
    """Start the background worker if none is alive for this store; True if one runs now."""
    from engine.jobs.worker import start_worker_process, worker_running

    url = default_store_url()
    if worker_running(url) is not None:
        return True
    if not worker_enabled():
        return False
    start_worker_process(url)
    return True


def worker_alive() -> bool:
    from engine.jobs.worker import worker_running

    return worker_running(default_store_url()) is not None


def queue_sweep(payload: dict, title: str) -> int:
    """Queue one sweep job; returns its id. The worker picks it up; the page never waits for it."""
    return queue_job(SWEEP_FN, payload, title)


def queue_job(fn: str, payload: dict, title: str) -> int:
    """Queue a job (its function name is checked against the allow-list) and make sure a worker runs."""
    job_id = store().enqueue(fn, payload, title, owner=auth.user_name())  # None: no sign-in, "local"
    if worker_enabled():
        ensure_worker()
    return job_id


def cancel_job(job_id: int, note: str = "") -> None:
    """Ask job `job_id` to stop (a button's callback); says so in a toast. The store checks ownership
    too: a button shown only to its owner is the first gate, not the only one."""
    from engine.auth import NotPermitted

    try:
        status = store().request_cancel(job_id, by=auth.user_name(), admin=auth.is_admin())
    except NotPermitted as e:
        st.toast(str(e))
        return
    st.toast(f"Job {job_id}: {'cancelled' if status == 'cancelled' else 'stopping'}{note}.")


@st.cache_data(show_spinner=False)
def published_frame() -> pd.DataFrame | None:
    """The shipped published measurements (engine.reference), or None if they cannot be read."""
    try:
        from engine.reference import published_frame as load
    except ImportError:
        return None
    return load()


@st.cache_data(show_spinner=False)
def published_points() -> pd.DataFrame:
    """Published recipes with both a speedup and an accuracy loss (for the results chart overlay)."""
    from engine import plots

    frame = published_frame()
    return plots.published_points(frame) if frame is not None else pd.DataFrame()
