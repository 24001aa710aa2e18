"""The store and the job queue on a real PostgreSQL server (what a team points TLAB_STORE_URL at).

A throwaway server is started from the local PostgreSQL binaries (`.ci/install_postgres.sh`
installs Debian's) in a temporary folder, on a free port. The SQLite tests of test_store.py that do
not look at SQLite itself run again here, plus the job queue's claim/cancel cycle.
Skipped when no PostgreSQL is installed, unless TLAB_REQUIRE_POSTGRES=1 (CI sets it) makes that a
failure.
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

# The SQLite suite's store tests and its `store` fixture, run here on this module's `home` (PostgreSQL).
from test_store import (  # noqa: F401
    store,
    test_bad_records_are_refused,
    test_change_token,
    test_export_json_csv_table,
    test_failure_mid_save_leaves_nothing,
    test_list_results_filters_and_delete,
    test_migrated_schema_matches_table_definitions,
    test_nan_metric_round_trips,
    test_results_frame_5000_rows,
    test_upsert_replaces_metrics,
)


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _missing(why: str):
    if os.environ.get("TLAB_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{why} (TLAB_REQUIRE_POSTGRES=1: run .ci/install_postgres.sh)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def pg_url():
    """postgresql:// URL (the README's form; SQLAlchemy 2.1 uses psycopg 3 for it) of a database on a
    throwaway local server."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (pip install -e '.[test]')")
    bindir = _pg_bin()
    if bindir is None:
        _missing("PostgreSQL is not installed (no initdb)")
    # PostgreSQL refuses to run as root: run the server as the 'postgres' system user then.
    as_user = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            _missing("running as root without a 'postgres' user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    # Not under pytest's tmp folder: that is private to root, and the server may run as 'postgres'.
    root = Path(tempfile.mkdtemp(prefix="tlab-pg-"))
    data, sock, log = root / "data", root / "sock", root / "server.log"
    sock.mkdir()
    if as_user:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    port = _free_port()

    def run(*cmd, **kw):
        return subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True, timeout=120, **kw)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "tlab", "--auth=trust", "-E", "UTF8")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start",
        "-o", f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off")
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.3)
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "tlab", "tlab")
        yield f"postgresql://tlab@127.0.0.1:{port}/tlab"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def home(tmp_path, monkeypatch, pg_url):
    """A fresh database on the module's server for each test, as TLAB_STORE_URL."""
    import psycopg

    name = f"t_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    monkeypatch.setenv("TLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TLAB_STORE_URL", f"{pg_url.rsplit('/', 1)[0]}/{name}")
    return tmp_path / "home"


def test_store_on_postgres_is_postgres(store, home):
    assert store._engine.dialect.name == "postgresql"
    assert not (home / "tlab.db").exists()  # nothing fell back to SQLite


def test_job_queue_claims_each_job_once_and_cancels(store):
    fn = "engine.pipeline:run_sweep_job"
    first = store.enqueue(fn, {"n": 1}, title="one")
    second = store.enqueue(fn, {"n": 2}, title="two")
    third = store.enqueue(fn, {"n": 3}, title="three")
    claimed = store.claim_next("w1", worker_pid=111)
    assert claimed["id"] == first and claimed["status"] == "running" and claimed["payload"] == {"n": 1}
    assert store.claim_next("w2", worker_pid=222)["id"] == second
    assert store.request_cancel(third) == "cancelled"  # queued: cancelled at once
    assert store.claim_next("w3") is None
    assert store.request_cancel(second) == "running"  # running: the worker is asked to stop it
    assert store.get_job(second)["cancel_requested"] and store.get_job(third)["status"] == "cancelled"
