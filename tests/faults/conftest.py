"""The fault suite (`pytest tests/faults -m faults`): real processes killed with SIGKILL, a real memory
limit, concurrent submitters, fuzzed inputs. Each test adds what it did to COUNTS; the run ends with
the totals (rows lost must be 0)."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COUNTS = {"faults injected": 0, "inputs tried": 0, "rows lost": 0, "jobs finished": 0}


@pytest.fixture
def counts() -> dict:
    return COUNTS


@pytest.fixture
def fault_store(tmp_path, monkeypatch):
    """A store in a fresh TLAB_HOME whose jobs may name tests.* functions (in child processes too)."""
    from engine.store import open_store

    monkeypatch.setenv("TLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TLAB_STORE_URL", raising=False)
    monkeypatch.setenv("TLAB_JOB_MODULES", "tests")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    store = open_store()
    yield store
    store.close()


def wait_for(predicate, timeout=60.0, what="condition", every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def start_worker(store) -> subprocess.Popen:
    """`tlab worker` as its own process, as a user would run it."""
    env = {**os.environ, "TLAB_STORE_URL": store.url}
    log = open(Path(os.environ["TLAB_HOME"]) / "worker-under-test.log", "ab")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "engine.jobs.worker", "--poll", "0.05"], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def kill9(*pids: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def integrity(db: Path) -> list[str]:
    """SQLite's full check (every page and index): ['ok'] for a sound file."""
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def db_file(store) -> Path:
    return Path(store.url.removeprefix("sqlite:///"))


def pytest_terminal_summary(terminalreporter):
    totals = dict(COUNTS)
    # The Ray tests keep their own counts (imported as a package module or by file name, per pytest's mode).
    ray = sys.modules.get("tests.faults.test_ray_cluster") or sys.modules.get("test_ray_cluster")
    for key, value in (getattr(ray, "COUNTS", None) or {}).items():
        if key in totals:
            totals[key] += value
    if any(totals.values()):
        terminalreporter.write_sep("-", "fault suite")
        terminalreporter.write_line(", ".join(f"{k}: {v}" for k, v in totals.items()))
