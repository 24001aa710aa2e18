"""A store that is read-only, on a full disk, another program's, or damaged: each gets its own clear
error (never a traceback, never "may be damaged" for a store that is not), and a damaged result is
computed again instead of being reused with empty metrics. Real SQLite files and real SQLite errors."""

import errno
import hashlib
import sqlite3

import pytest
import sqlalchemy as sa

from engine.errors import StoreError, TlabError
from engine.reuse import results_to_compute
from engine.spec import ExperimentSpec, Recipe
from engine.store import UnreadableResult, open_store
from engine.store import diagnose
from engine.store.sql_store import UnreadableResultWarning
from tests.unit.test_store import make_record

pytestmark = pytest.mark.bad_input


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _real_sqlite_error(kind: str) -> sqlite3.Error:
    """The exception SQLite itself raises for a read-only or a full database."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x)")
    if kind == "read-only":
        conn.execute("PRAGMA query_only = ON")
    else:
        conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    try:
        conn.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    except sqlite3.Error as e:
        return e
    finally:
        conn.close()
    raise AssertionError(f"SQLite accepted a write to a {kind} database")


# --- read-only and full: classified, with what to do --------------------------------------------
@pytest.mark.parametrize("exc, kind", [
    (_real_sqlite_error("read-only"), diagnose.READ_ONLY),
    (_real_sqlite_error("full"), diagnose.FULL),
    (OSError(errno.EROFS, "Read-only file system"), diagnose.READ_ONLY),
    (OSError(errno.EACCES, "Permission denied"), diagnose.READ_ONLY),
    (OSError(errno.ENOSPC, "No space left on device"), diagnose.FULL),
    (sqlite3.OperationalError("database is locked"), diagnose.LOCKED),
    (sqlite3.DatabaseError("database disk image is malformed"), diagnose.DAMAGED),
    (sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full")), diagnose.FULL),
    (ValueError("something else"), None),
])
def test_failures_are_classified(exc, kind):
    assert diagnose.classify(exc) == kind


@pytest.mark.parametrize("kind, words", [
    (diagnose.READ_ONLY, ["read-only", "chmod u+w", "TLAB_HOME"]),
    (diagnose.FULL, ["full", "Free some space", "TLAB_HOME", "intact"]),
])
def test_read_only_and_full_advice_say_what_to_do_not_damaged(tmp_path, kind, words):
    path = tmp_path / "tlab.db"
    message = diagnose.advice(kind, f"sqlite:///{path}", path, "detail")
    assert all(w in message for w in words) and str(path) in message
    assert "damaged" not in message


def _store_whose_connections(store, pragma: str):
    """New connections of `store` run `pragma` first (the pool is emptied so every one is new)."""
    sa.event.listen(store._engine, "connect", lambda conn, _: conn.execute(pragma))
    store._engine.dispose()
    return store


def test_full_disk_on_write_says_full_and_keeps_the_store(home):
    store = open_store()
    store.save_result(make_record("fp8"))
    pages = store._engine.connect().exec_driver_sql("PRAGMA page_count").scalar()
    _store_whose_connections(store, f"PRAGMA max_page_count = {pages}")
    big = [{**make_record(p, s), "spec": {**make_record(p, s)["spec"], "pad": "x" * 50_000}}
           for p in ("int8_sq", "int4_awq") for s in ("none", "sparsegpt")]
    with pytest.raises(StoreError) as err:
        store.save_results(big)
    message = str(err.value)
    assert "is full" in message and "Free some space" in message and "damaged" not in message
    assert [r.precision for r in store.list_results()] == ["fp8"]  # the failed write left nothing half done
    store.close()


def test_read_only_store_on_write_says_read_only(home):
    store = _store_whose_connections(open_store(), "PRAGMA query_only = ON")
    with pytest.raises(StoreError) as err:
        store.save_result(make_record("fp8"))
    message = str(err.value)
    assert "read-only" in message and "TLAB_HOME" in message and "damaged" not in message
    store.close()


def _permissions_enforced(tmp_path) -> bool:
    """False for root with CAP_DAC_OVERRIDE, which writes through any mode bits."""
    probe = tmp_path / "probe"
    probe.touch(0o444)
    try:
        probe.open("a").close()
        return False
    except PermissionError:
        return True


@pytest.mark.parametrize("what", ["folder", "file"])
def test_chmod_read_only_store(home, tmp_path, what):
    if not _permissions_enforced(tmp_path):
        pytest.skip("this user writes through file permissions (root); the classification tests above cover "
                    "this case with SQLite's own errors. To run it as root: setpriv --bounding-set "
                    "-dac_override,-dac_read_search python -m pytest ...")
    store = open_store()
    store.save_result(make_record("fp8"))
    store.close()
    target = home if what == "folder" else home / "tlab.db"
    mode = target.stat().st_mode
    target.chmod(0o555 if what == "folder" else 0o444)
    try:
        before = _digest(home / "tlab.db")
        with pytest.raises(TlabError) as err:  # a read-only TLAB_HOME is refused as a setting first
            store = open_store()
            store.save_result(make_record("int8_sq"))
        assert "read-only" in str(err.value) and "damaged" not in str(err.value)
        assert _digest(home / "tlab.db") == before
    finally:
        target.chmod(mode)


# --- another program's SQLite file: refused before anything writes to it ------------------------
@pytest.mark.parametrize("where", ["TLAB_HOME", "TLAB_STORE_URL"])
def test_foreign_sqlite_file_is_refused_unchanged(home, tmp_path, monkeypatch, where):
    other = home / "tlab.db" if where == "TLAB_HOME" else tmp_path / "other.db"
    other.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(other) as raw:
        raw.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
        raw.execute("INSERT INTO customers VALUES (1, 'Ada')")
    raw.close()
    before = _digest(other)
    if where == "TLAB_STORE_URL":
        monkeypatch.setenv("TLAB_STORE_URL", f"sqlite:///{other}")
    with pytest.raises(StoreError) as err:
        open_store()
    assert "not a Tradeoff Lab store" in str(err.value) and str(other) in str(err.value)
    assert "customers" in str(err.value)
    assert _digest(other) == before
    assert not other.with_name(other.name + "-wal").exists()
    with sqlite3.connect(f"{other.as_uri()}?mode=ro", uri=True) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert [r[0] for r in raw.execute("SELECT name FROM sqlite_master")] == ["customers"]


# --- damaged rows: never reused, listed without them, with a note -------------------------------
def _store_with_two(home):
    store = open_store()
    good, bad = make_record("fp8"), make_record("int8_sq")
    store.save_results([good, bad])
    return store, good["id"], bad["id"]


def _spec(precision) -> ExperimentSpec:
    return ExperimentSpec(recipe=Recipe(precision=precision))


def _damage_row(home, sql: str, rid: str) -> None:
    with sqlite3.connect(home / "tlab.db") as raw:
        assert raw.execute(sql, (rid,)).rowcount >= 1
    raw.close()


@pytest.mark.parametrize("sql, why", [
    ("UPDATE results SET provenance = substr(provenance, 1, 25) WHERE id = ?", "'provenance' is not valid JSON"),
    ("UPDATE results SET spec = '[1, 2]' WHERE id = ?", "'spec' holds list"),
    ("UPDATE metrics SET value = 'garbage' WHERE result_id = ? AND name = 'perplexity'",
     "metric 'perplexity' holds 'garbage'"),
    ("UPDATE metrics SET value = x'00ff' WHERE result_id = ?", "not a number"),
])
def test_damaged_result_row_is_recomputed_and_listed_without(home, sql, why):
    store, good, bad = _store_with_two(home)
    _damage_row(home, sql, bad)

    with pytest.raises(UnreadableResult) as err:
        store.get_result(bad)
    assert bad in str(err.value) and why in str(err.value) and "run its sweep again" in str(err.value)
    assert isinstance(err.value, StoreError)

    stages = []
    todo = results_to_compute([_spec("fp8"), _spec("int8_sq")], store, with_speed=False, force=False,
                              progress=lambda f, s: stages.append(s))
    assert [s.id for s in todo] == [bad]
    assert any(bad in s and "computing it again" in s for s in stages)

    with pytest.warns(UnreadableResultWarning, match=bad):
        assert [r.id for r in store.list_results()] == [good]
    assert store.unreadable_results() == {bad: err.value.why}
    if "metrics" in sql:  # the frame reads metric values (not the JSON columns)
        with pytest.warns(UnreadableResultWarning, match=bad):
            frame = store.results_frame()
        assert list(frame["id"]) == [good] and bad in frame.attrs["unreadable"]
    store.save_result(make_record("int8_sq"))  # the recomputed result replaces the damaged row
    assert store.get_result(bad).metrics["perplexity"] == 12.5 and store.unreadable_results() == {}
    store.close()


# --- damaged pages --------------------------------------------------------------------------------
def _closed_store_file(home):
    store, good, bad = _store_with_two(home)
    store.close()  # the last connection checkpoints the WAL into the file
    db = home / "tlab.db"
    assert not db.with_name("tlab.db-wal").exists()
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as raw:
        size = raw.execute("PRAGMA page_size").fetchone()[0]
        roots = dict(raw.execute("SELECT name, rootpage FROM sqlite_master"))
    raw.close()
    return db, size, roots, good, bad


def _empty_leaf(data: bytearray, page: int, size: int, kind: int) -> None:
    """Rewrite a b-tree page as a valid leaf with no cells: its rows are gone without a trace."""
    start = (page - 1) * size
    assert data[start] == kind  # a leaf page already (the test's tables are one page each)
    data[start:start + size] = bytes(size)
    data[start] = kind
    data[start + 5:start + 7] = size.to_bytes(2, "big")  # cell content area starts at the end


def test_metric_pages_lost_means_recompute_not_reuse_with_empty_metrics(home):
    db, size, roots, good, bad = _closed_store_file(home)
    data = bytearray(db.read_bytes())
    _empty_leaf(data, roots["metrics"], size, 0x0D)  # table leaf
    _empty_leaf(data, roots["sqlite_autoindex_metrics_1"], size, 0x0A)  # its index leaf
    db.write_bytes(bytes(data))

    store = open_store()  # consistent pages: SQLite's checks pass, the metrics are simply gone
    stages = []
    todo = results_to_compute([_spec("fp8"), _spec("int8_sq")], store, with_speed=False, force=False,
                              progress=lambda f, s: stages.append(s))
    assert [s.id for s in todo] == [good, bad]
    assert sum("metric rows are missing" in s for s in stages) == 2
    store.close()


@pytest.mark.parametrize("damage", ["cell count", "whole page"])
def test_damaged_page_is_refused_on_open_with_how_to_recover(home, damage):
    db, size, roots, _, _ = _closed_store_file(home)
    data = bytearray(db.read_bytes())
    start = (roots["metrics"] - 1) * size
    if damage == "cell count":
        data[start + 3:start + 5] = b"\x00\x00"  # the page says it holds no rows; its bytes say otherwise
    else:
        data[start:start + size] = bytes(size)
    db.write_bytes(bytes(data))
    before = _digest(db)
    with pytest.raises(StoreError) as err:
        open_store()
    message = str(err.value)
    assert str(db) in message and "damaged" in message and ("mv" in message or "Move it away" in message)
    assert _digest(db) == before


def test_damage_that_passes_the_quick_check_is_a_clear_error_when_read(home):
    db, size, roots, good, _ = _closed_store_file(home)
    data = bytearray(db.read_bytes())
    _empty_leaf(data, roots["metrics"], size, 0x0D)  # rows gone from the table, still in its index
    db.write_bytes(bytes(data))
    store = open_store()  # PRAGMA quick_check does not compare an index with its table
    reads = {"frame": lambda: store.results_frame().get("perplexity", []),
             "list": lambda: [r.metrics.get("perplexity") for r in store.list_results()],
             "get": lambda: [store.get_result(good).metrics.get("perplexity")],
             "reuse": lambda: [s.id for s in results_to_compute([_spec("fp8")], store, False, False, print)]}
    raised = set()
    for name, read in reads.items():
        try:
            values = list(read())
        except StoreError as e:  # a read through the index meets the damage
            assert "damaged" in str(e) and f"mv '{db}'" in str(e), name
            raised.add(name)
        else:  # a read that only scans the table sees no metrics: never a number, never reused
            assert values == [good] if name == "reuse" else all(v is None or v != v for v in values), name
    assert raised  # SQLite's plans read metrics through their index somewhere
    store.close()


@pytest.mark.bad_input
def test_tlab_results_lists_the_rest_with_a_plain_note(home, capsys):
    from engine import cli

    store, good, bad = _store_with_two(home)
    _damage_row(home, "UPDATE results SET spec = '[1, 2]' WHERE id = ?", bad)
    store.close()
    assert cli.main(["results", "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert good in out and bad not in out
    assert err.startswith("note: ") and bad in err and "Warning" not in err
