"""Results store on a real SQLite file in a temporary TLAB_HOME."""

import csv
import io
import json
import math
import sqlite3
import sys

import pytest

from engine.errors import StoreError
from engine.paths import default_store_url, tlab_home
from engine.spec import ExperimentSpec, Recipe
from engine.store import open_store
from engine.store.export import to_csv, to_json, to_json_records, to_table
from engine.store.sql_store import SqlStore


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TLAB_STORE_URL", raising=False)
    return tmp_path / "home"


@pytest.fixture
def store(home):
    s = open_store()
    yield s
    s.close()


def make_record(precision="int4_awq", sparsity="none", experiment="sweep-1", **metrics) -> dict:
    spec = ExperimentSpec(recipe=Recipe(precision=precision, sparsity=sparsity))
    return {
        "id": spec.id, "experiment": experiment, "model": "bundled", "precision": precision,
        "sparsity": sparsity, "kv_cache": "auto", "spec": spec.to_dict(),
        "metrics": metrics or {"perplexity": 12.5, "speedup": 1.8},
        "units": {"speedup": "x"} if "speedup" in (metrics or {"speedup": 0}) else {},
        "provenance": {
            "accuracy": {"kind": "measured", "device": "cpu", "engine": "torch", "versions": {"torch": "2.13"}},
            "speed": {"kind": "estimated", "method": "roofline from memory bandwidth", "backend": "tensorrt-llm"},
        },
        "timings": {"calibrate": 3.5, "evaluate": 1.25},
        "device": "cpu", "versions": {"torch": "2.13.0", "modelopt": "0.47"},
        "created_at": "2026-11-27T07:00:00+00:00",
    }


def test_paths_follow_tlab_home_and_store_url(home, monkeypatch):
    assert tlab_home() == home and home.is_dir()
    assert default_store_url() == f"sqlite:///{home / 'tlab.db'}"
    monkeypatch.setenv("TLAB_STORE_URL", "sqlite:////elsewhere/x.db")
    assert default_store_url() == "sqlite:////elsewhere/x.db"


def test_home_with_url_special_characters(tmp_path, monkeypatch):
    home = tmp_path / "my lab #1?v=2%"
    monkeypatch.setenv("TLAB_HOME", str(home))
    monkeypatch.delenv("TLAB_STORE_URL", raising=False)
    open_store().save_result(make_record())
    assert (home / "tlab.db").is_file()
    assert len(open_store().list_results()) == 1  # reopened through the read-only probe too


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_DATA_HOME is the Linux data folder")
def test_default_home_is_the_user_data_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("TLAB_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # platformdirs' Linux data folder
    assert tlab_home() == tmp_path / "xdg" / "tradeoff-lab" and tlab_home().is_dir()


def test_round_trip(store, home):
    record = make_record()
    assert store.save_result(record) == record["id"]
    assert (home / "tlab.db").exists()
    got = store.get_result(record["id"])
    for key in ("id", "experiment", "model", "precision", "sparsity", "kv_cache", "spec", "metrics",
                "units", "provenance", "timings", "device", "versions", "created_at"):
        assert getattr(got, key) == record[key], key
    assert got.status == "done"
    assert store.has_result(record["id"]) and not store.has_result("nope")
    assert store.get_result("nope") is None
    assert ExperimentSpec.from_dict(got.spec).id == record["id"]
    assert [e["name"] for e in store.list_experiments()] == ["sweep-1"]


def test_sqlite_settings(store, home):
    with sqlite3.connect(home / "tlab.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_upsert_replaces_metrics(store):
    record = make_record(perplexity=12.5, speedup=1.8)
    store.save_result(record)
    store.save_result({**record, "metrics": {"perplexity": 13.0}, "units": {}})
    got = store.get_result(record["id"])
    assert got.metrics == {"perplexity": 13.0}
    assert len(store.list_results()) == 1
    assert list(store.results_frame()["perplexity"]) == [13.0]


def test_failure_mid_save_leaves_nothing(store, monkeypatch):
    old = make_record(perplexity=12.5)
    store.save_result(old)
    new = make_record(precision="fp8", perplexity=11.0)

    def explode(self, conn, metric_rows):
        raise RuntimeError("disk went away")  # after the results row was written in this transaction

    monkeypatch.setattr(SqlStore, "_insert_metrics", explode)
    with pytest.raises(RuntimeError):
        store.save_result(new)
    with pytest.raises(RuntimeError):  # replacing an existing result: the old one survives intact
        store.save_result({**old, "metrics": {"perplexity": 99.0}})
    monkeypatch.undo()
    assert not store.has_result(new["id"])
    assert store.get_result(old["id"]).metrics == {"perplexity": 12.5}
    # A batch with one bad record writes nothing.
    with pytest.raises(StoreError, match="must be a number"):
        store.save_results([new, make_record(precision="int8_sq", perplexity="high")])
    assert not store.has_result(new["id"])


@pytest.mark.parametrize("bad, message", [
    ({"provenance": {"accuracy": {"kind": "guessed"}}}, "measured, estimated, published"),
    ({"metrics": {"model": 1.0}, "units": {}}, "cannot be a metric name"),
    ({"id": ""}, "needs an 'id'"),
    ({"versions": {"x": object()}}, "cannot be saved as JSON"),
    ({"created_at": "yesterday"}, "ISO 8601"),
])
@pytest.mark.bad_input
def test_bad_records_are_refused(store, bad, message):
    with pytest.raises(StoreError, match=message):
        store.save_result({**make_record(), **bad})
    assert store.list_results() == []


def test_list_results_filters_and_delete(store):
    a, b, c = make_record("int4_awq"), make_record("fp8"), make_record("fp8", "magnitude", experiment="other")
    store.save_results([a, b, c])
    assert {r.id for r in store.list_results(precision="fp8")} == {b["id"], c["id"]}
    assert [r.id for r in store.list_results(experiment="other")] == [c["id"]]
    assert [r.id for r in store.list_results(ids=[a["id"]])] == [a["id"]]
    assert store.delete_result(b["id"]) and not store.delete_result(b["id"])
    assert {r.id for r in store.list_results()} == {a["id"], c["id"]}


def test_change_token(store):
    t0 = store.change_token()
    assert store.change_token() == t0  # reads do not change it
    store.save_result(make_record())
    t1 = store.change_token()
    assert t1 != t0 and store.change_token("jobs") == "jobs:0"
    store.enqueue("engine.pipeline:run_sweep_job", {}, "sweep")
    assert store.change_token() != t1 and store.change_token("results") == t1.split("|")[1]


def test_results_frame_5000_rows(store):
    records = []
    for i in range(5000):
        r = make_record(perplexity=10.0 + i, speedup=1.0 + i / 1000)
        r["id"] = f"r{i:05d}"
        r["provenance"]["accuracy"]["kind"] = "estimated"
        if i % 2:
            r["provenance"]["speed"]["kind"] = "measured"
        if i == 7:
            r["metrics"]["kv_bytes"] = 4096.0
        records.append(r)
    store.save_results(records)
    frame = store.results_frame()
    assert len(frame) == 5000 and frame["id"].is_unique
    row = frame.set_index("id").loc["r00042"]
    assert row["perplexity"] == 52.0 and row["speedup"] == pytest.approx(1.042)
    assert row["model"] == "bundled" and row["experiment"] == "sweep-1"
    assert row["provenance"] == "estimated" and frame.set_index("id").loc["r00043", "provenance"] == "measured"
    assert frame["kv_bytes"].notna().sum() == 1
    assert str(frame["created_at"].dtype).startswith("datetime64")


def test_empty_frame_has_columns(store):
    frame = store.results_frame()
    assert frame.empty and {"id", "model", "precision", "provenance"} <= set(frame.columns)


def test_nan_metric_round_trips(store):
    record = make_record(perplexity=float("nan"), speedup=2.0)
    store.save_result(record)
    assert math.isnan(store.get_result(record["id"]).metrics["perplexity"])
    json.loads(to_json(store.list_results()))  # NaN becomes null: still valid JSON


def test_export_json_csv_table(store):
    store.save_results([make_record("int4_awq", perplexity=12.5, speedup=1.8),
                        make_record("fp8", perplexity=11.0, speedup=1.3)])
    records = store.list_results()
    objs = to_json_records(records)
    json.dumps(objs)
    first = next(o for o in objs if o["precision"] == "int4_awq")
    assert first["perplexity"] == 12.5 and first["speedup"] == 1.8
    assert first["metrics"] == {"perplexity": 12.5, "speedup": 1.8}
    assert first["provenance"] == "measured"  # speed estimated -> the accuracy kind
    assert first["provenance_detail"]["speed"]["kind"] == "estimated"
    assert first["backend"] == "tensorrt-llm" and first["device"] == "cpu"
    for key in ("id", "experiment", "model", "sparsity", "kv_cache", "versions", "timings", "created_at", "spec"):
        assert key in first
    rows = list(csv.DictReader(io.StringIO(to_csv(records))))
    assert len(rows) == 2 and float(rows[0]["perplexity"]) in (12.5, 11.0)
    assert {"id", "precision", "perplexity", "speedup", "provenance", "device", "backend"} <= set(rows[0])
    table = to_table(records)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["id", "experiment", "model"] and len(lines) == 4
    assert all(r.id in table for r in records) and "12.5" in table


@pytest.mark.bad_input
def test_corrupt_store_file_is_refused_and_untouched(home):
    home.mkdir(parents=True)
    db = home / "tlab.db"
    for content in (b"this is my shopping list, not a database\n" * 100,
                    b"SQLite format 3\x00" + bytes(range(256)) * 20):
        db.write_bytes(content)
        with pytest.raises(StoreError) as err:
            open_store()
        message = str(err.value)
        assert str(db) in message and "TLAB_HOME" in message and "Move it away" in message
        assert db.read_bytes() == content


@pytest.mark.bad_input
def test_newer_schema_is_refused(home):
    open_store().close()
    with sqlite3.connect(home / "tlab.db") as raw:
        raw.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="newer version of Tradeoff Lab"):
        open_store()


@pytest.mark.bad_input
def test_foreign_database_is_refused(home, tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as raw:
        raw.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(StoreError, match="not a Tradeoff Lab store"):
        open_store(f"sqlite:///{other}")


@pytest.mark.bad_input
def test_bad_url_and_missing_driver(home):
    with pytest.raises(StoreError, match="not a database URL"):
        open_store("not a url")
    with pytest.raises(StoreError, match="driver"):
        open_store("nosuchdb+nodriver://u:secret@host/db")


def test_migrated_schema_matches_table_definitions(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from engine.store.db import known_revisions
    from engine.store.schema import SCHEMA_REVISION, metadata

    assert known_revisions()[0] == SCHEMA_REVISION  # the newest migration is what the code expects
    with store._engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrations_are_shipped_as_package_data():
    from pathlib import Path

    import engine.store.migrations as m

    folder = Path(m.__file__).parent
    assert (folder / "env.py").exists() and (folder / "script.py.mako").exists()
    assert list((folder / "versions").glob("0001_*.py"))
