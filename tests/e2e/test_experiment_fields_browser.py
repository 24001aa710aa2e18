"""In a real browser, Run queues only the values the Experiment page shows: a value typed and followed at once
by a click on Run (Streamlit commits both in one rerun, while Run's callback still holds the render before)
is refused with a message, and an out-of-range value is committed, named and keeps Run disabled.
No worker runs (TLAB_APP_WORKER=0), so queued jobs stay in the store for the test to read. About a minute."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.conftest import REPO, _free_port, _wait_healthy, requires_chromium

pytestmark = [pytest.mark.e2e, requires_chromium]
QUEUED = re.compile(r"^Queued job #\d+")  # not the sidebar's "queued jobs wait"
RUN_ENABLED = ("() => { const b = [...document.querySelectorAll('button')].find(b => b.innerText.trim() == 'Run');"
               " return b && !b.disabled; }")


@pytest.fixture
def app_without_worker(tmp_path, monkeypatch):
    monkeypatch.setenv("TLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TLAB_STORE_URL", raising=False)
    env = {**os.environ, "TLAB_APP_WORKER": "0",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    port, log = _free_port(), tmp_path / "streamlit.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port),
                                 "--server.headless", "true"], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, log)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def test_run_queues_only_the_values_shown(app_without_worker, page):
    page.goto(app_without_worker + "/experiment")
    page.wait_for_function(RUN_ENABLED)  # after the first token count of the bundled text
    field = page.get_by_role("spinbutton", name="Calibration sequences")
    run = page.get_by_role("button", name="Run", exact=True)

    field.fill("100000")
    run.click()  # no Enter, no blur before the click
    page.get_by_text("Calibration sequences: 100,000 is out of range").wait_for()
    assert run.is_disabled()

    field.fill("16")
    field.press("Enter")
    page.wait_for_function(RUN_ENABLED)
    field.fill("8")
    run.click()  # before this change, this queued 16
    page.get_by_text("A value changed as you clicked Run").or_(page.get_by_text(QUEUED)).wait_for()
    if page.get_by_text("A value changed as you clicked Run").count():  # the usual case: refused
        assert _queued_calib_sizes() == []
        run.click()  # the page shows 8 now
        page.get_by_text(QUEUED).wait_for()
    # (had the server finished the rerun the typing caused before the click came, Run would hold 8 already)
    deadline = time.monotonic() + 20
    while not _queued_calib_sizes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _queued_calib_sizes() == [8]


def _queued_calib_sizes() -> list[int]:
    from engine.store import open_store

    store = open_store()
    try:
        return [j["payload"]["spec"]["data"]["calib_size"] for j in store.list_jobs()]
    finally:
        store.close()
