"""The Jobs page says how long a running job has left: from the sweep's up-front estimate at first,
from the rate it is observed to go at as it advances, and nothing while nothing honest can be said."""

import os
import socket
import time

import sqlalchemy as sa

from engine.pipeline import sweep_payload
from engine.spec import DataSpec, Recipe, SweepSpec, Workload
from engine.store.schema import jobs
from tests.app.conftest import open_page


def _running(store, fn: str, payload: dict, progress: float, started_s_ago: float = 0.0) -> int:
    job_id = store.enqueue(fn, payload, "a running job")
    store.claim_next("test-worker", os.getpid(), socket.gethostname())  # a live pid: this test
    store.update_progress(job_id, progress, "calibrating INT8 SmoothQuant")
    if started_s_ago:
        with store._tx(write=True) as conn:  # the job started a while ago (its heartbeat stays fresh)
            conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(started_at=time.time() - started_s_ago))
    return job_id


def _running_caption(at) -> str:
    return next(c.value for c in at.caption if c.value.startswith("Running for"))


def test_a_sweep_just_started_shows_its_estimate_as_time_left(app_home):
    spec = SweepSpec(recipes=(Recipe("bf16"), Recipe("int8_sq")), data=DataSpec(calib_size=4),
                     workload=Workload(16, 8, (1,)))
    _running(app_home, "engine.pipeline:run_sweep_job", sweep_payload(spec), 0.1)
    at = open_page("jobs")
    assert not at.exception
    caption = _running_caption(at)
    assert caption.endswith(" left") and "· about " in caption


def test_a_job_half_done_after_two_minutes_has_about_two_minutes_left(app_home):
    _running(app_home, "tests.helpers_jobs:sleepy", {}, 0.5, started_s_ago=120)
    at = open_page("jobs")
    assert not at.exception
    caption = _running_caption(at)
    assert caption.startswith("Running for 2 min") and caption.endswith("· about 2 min left")


def test_no_time_left_is_guessed_without_an_estimate_or_enough_progress(app_home):
    _running(app_home, "tests.helpers_jobs:sleepy", {}, 0.4)  # no estimate, and only just started
    at = open_page("jobs")
    assert not at.exception
    assert "left" not in _running_caption(at)
