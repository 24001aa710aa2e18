"""Shared browser-test plumbing: a real `streamlit run app/main.py` on a free local port with a fresh
TLAB_HOME, and Debian's Chromium (/usr/bin/chromium; .ci/install_browser.sh installs it) driven by
Playwright. Screenshots go to artifacts/screenshots/; the server's log is copied there as streamlit-<test name>.log."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO / "artifacts" / "screenshots"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]

requires_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"{CHROMIUM} is missing: run .ci/install_browser.sh (CI does) to install Debian's chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"streamlit did not become healthy in {timeout_s} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session", autouse=True)
def fresh_screenshots():
    """Screenshots from an earlier run must not pass for this run's."""
    for old in SHOTS.glob("*") if SHOTS.exists() else ():
        old.unlink()


@pytest.fixture
def app_url(tmp_path, monkeypatch, request):
    """The URL of a running app on a fresh store; stops the app and its worker afterwards."""
    home = tmp_path / "home"
    monkeypatch.setenv("TLAB_HOME", str(home))
    monkeypatch.delenv("TLAB_STORE_URL", raising=False)
    monkeypatch.delenv("TLAB_APP_WORKER", raising=False)  # the app starts its own worker, as for a user
    port = _free_port()
    log = tmp_path / "streamlit.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           # The server and browser share these 2 cores with the demo's speed runs: one benchmark
           # thread keeps its timings steady enough for a speedup (recorded in the provenance).
           "TLAB_BENCH_THREADS": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port),
                                 "--server.headless", "true"], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        from engine.jobs.worker import worker_running
        from engine.paths import default_store_url

        worker = worker_running(default_store_url())
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        if worker and worker > 0:  # it would leave by itself once its parent is gone; do not wait for that
            try:
                os.kill(worker, signal.SIGTERM)
            except ProcessLookupError:
                pass
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / f"streamlit-{request.node.name}.log").write_text(log.read_text(errors="replace"))


@pytest.fixture
def page():
    """A Playwright page in headless Chromium with a tall viewport (Streamlit scrolls inside the page)."""
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1800}, accept_downloads=True)
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        yield pg
        context.close()
        browser.close()


def shot(page, name: str) -> None:
    """Save a full-page screenshot as artifacts/screenshots/<name>.png."""
    page.wait_for_timeout(1500)  # let charts finish drawing (Streamlit scrolls inside the page: a tall viewport shows it all)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def wait_for_jobs(page, timeout_s: float, prefix: str = "") -> None:
    """Wait on the Jobs page until no job is queued or running; fail with the alerts of any that did not
    succeed. The page's status line reads like "running: 1 · queued: 1 · done: 2". Screenshots
    <prefix>jobs_running / _failed / _timeout."""
    import re

    deadline = time.monotonic() + timeout_s
    shot_running = False
    while time.monotonic() < deadline:
        body = page.inner_text("body")
        if re.search(r"\b(failed|interrupted|cancelled): \d", body):
            shot(page, f"{prefix}jobs_failed")
            alerts = page.get_by_test_id("stAlert").all_inner_texts()
            raise AssertionError(f"A job did not succeed: {' | '.join(alerts)}")
        if not re.search(r"\b(queued|running): \d", body) and re.search(r"\bdone: \d", body):
            return
        if not shot_running and "Running for" in body and not re.search(r"\(0%\)", body):  # past "starting"
            shot(page, f"{prefix}jobs_running")
            shot_running = True
        page.wait_for_timeout(2000)
    shot(page, f"{prefix}jobs_timeout")
    raise AssertionError(f"The jobs did not finish in {timeout_s} s:\n{page.inner_text('body')[-2000:]}")
