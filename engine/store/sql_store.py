"""SqlStore: the store on any SQLAlchemy database (SQLite by default, PostgreSQL for teams).
One transaction per operation; results here, the job queue in `sql_jobs`."""

import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from engine.errors import StoreError
from engine.store import records as rec
from engine.store.base import Store
from engine.store.entities import Result
from engine.store.db import WRITE_OPTION, create_store_engine, failure_message, safe_url
from engine.store.schema import experiments, metrics, results, revisions
from engine.store.sql_jobs import SqlJobsMixin
from engine.store.sql_users import SqlUsersMixin

# JSON columns are read as raw text and parsed per row (records.rows_to_record), so one damaged row
# is reported by id instead of failing the whole query.
_RESULT_COLS = [sa.type_coerce(c, sa.Text).label(c.name) if c.name in rec.JSON_FIELDS else c
                for c in results.c if c.name != "experiment_id"]


class UnreadableResultWarning(UserWarning):
    """Results skipped by a listing because their stored rows cannot be read."""


def _raw_rows(conn: sa.Connection, query) -> list[tuple]:
    """Plain tuples straight from the driver: SQLAlchemy's per-row objects cost more than the query.
    Only for selects of plain columns (no JSON or other processed types) without parameters."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(query.compile(dialect=conn.dialect)))
        return cursor.fetchall()
    finally:
        cursor.close()


def _frame(rows: list[tuple], columns: list[str]):
    import pandas as pd

    return pd.DataFrame.from_records(rows, columns=columns, coerce_float=True)


class SqlStore(SqlJobsMixin, SqlUsersMixin, Store):
    def __init__(self, url: str):
        self.url = url
        self.shown_url = safe_url(url)
        self._engine = create_store_engine(url)
        self._driver_error = getattr(self._engine.dialect.dbapi, "Error", sa.exc.SQLAlchemyError)

    def close(self) -> None:
        self._engine.dispose()

    def __repr__(self) -> str:
        return f"SqlStore({self.shown_url!r})"

    # --- transactions ----------------------------------------------------------------------
    @contextmanager
    def _tx(self, write: bool) -> Iterator[sa.Connection]:
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(**{WRITE_OPTION: True})
                with conn.begin():
                    yield conn
        except (sa.exc.SQLAlchemyError, self._driver_error) as e:  # _raw_rows meets the driver's own errors
            raise StoreError(failure_message(e, self.url)) from e

    @staticmethod
    def _bump(conn: sa.Connection, scope: str) -> None:
        conn.execute(sa.update(revisions).where(revisions.c.scope == scope)
                     .values(value=revisions.c.value + 1))

    def change_token(self, scope: str | None = None) -> str:
        with self._tx(write=False) as conn:
            rows = dict(conn.execute(sa.select(revisions.c.scope, revisions.c.value)).all())
        if scope is not None:
            if scope not in rows:
                raise StoreError(f"Unknown change scope '{scope}'; use 'results', 'jobs' or None.")
            return f"{scope}:{rows[scope]}"
        return "|".join(f"{k}:{v}" for k, v in sorted(rows.items()))

    # --- experiments -----------------------------------------------------------------------
    def _experiment_id(self, conn, name: str, model: str, settings: dict | None) -> int:
        found = conn.execute(sa.select(experiments.c.id).where(experiments.c.name == name)).scalar()
        if found is not None:
            return found
        res = conn.execute(sa.insert(experiments).values(
            name=name, model=model, settings=settings or {}, created_at=rec.now()))
        return res.inserted_primary_key[0]

    def ensure_experiment(self, name: str, model: str, settings: dict | None = None) -> int:
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise StoreError(f"An experiment name must be non-empty text of at most 200 characters; got {name!r}.")
        with self._tx(write=True) as conn:
            return self._experiment_id(conn, name, model, settings)

    def list_experiments(self) -> list[dict]:
        with self._tx(write=False) as conn:
            rows = conn.execute(sa.select(experiments).order_by(experiments.c.id)).mappings().all()
        return [{**r, "created_at": rec.to_iso(r["created_at"])} for r in rows]

    # --- results ---------------------------------------------------------------------------
    def _insert_results(self, conn, rows: list[dict]) -> None:
        ids = [row["id"] for row in rows]
        for i in range(0, len(ids), 500):  # bounded IN lists
            chunk = ids[i:i + 500]
            conn.execute(sa.delete(metrics).where(metrics.c.result_id.in_(chunk)))
            conn.execute(sa.delete(results).where(results.c.id.in_(chunk)))
        conn.execute(sa.insert(results), rows)

    def _insert_metrics(self, conn, metric_rows: list[dict]) -> None:
        if metric_rows:
            conn.execute(sa.insert(metrics), metric_rows)

    def save_results(self, records: Iterable[Result | dict]) -> list[str]:
        """All or nothing; a later record with the same id as an earlier one wins."""
        # Validate everything first: a bad record is refused before anything is written.
        prepared = {}
        for r in records:
            r = r.to_dict() if isinstance(r, Result) else r
            row, metric_rows = rec.record_to_rows(r, None)
            prepared[row["id"]] = (row, metric_rows, r.get("experiment"))
        if not prepared:
            return []
        with self._tx(write=True) as conn:
            experiment_ids = {}
            for row, _, experiment in prepared.values():
                if experiment:
                    if experiment not in experiment_ids:
                        experiment_ids[experiment] = self._experiment_id(conn, experiment, row["model"], None)
                    row["experiment_id"] = experiment_ids[experiment]
            self._insert_results(conn, [row for row, _, _ in prepared.values()])
            self._insert_metrics(conn, [m for _, metric_rows, _ in prepared.values() for m in metric_rows])
            self._bump(conn, "results")
        return list(prepared)

    def save_result(self, record: Result | dict) -> str:
        return self.save_results([record])[0]

    def _select_records(self, conn, where) -> tuple[list[Result], list[rec.UnreadableResult]]:
        """The matching results that read back, and why each of the others does not."""
        query = (sa.select(*_RESULT_COLS, experiments.c.name.label("experiment"))
                 .select_from(results.outerjoin(experiments)).where(*where)
                 .order_by(results.c.created_at, results.c.id))
        rows = conn.execute(query).mappings().all()
        if not rows:
            return [], []
        mquery = (sa.select(metrics).select_from(metrics.join(results).outerjoin(experiments))
                  .where(*where).order_by(metrics.c.name))
        by_result = defaultdict(list)
        for m in conn.execute(mquery).mappings():
            by_result[m["result_id"]].append(m)
        readable, unreadable = [], []
        for r in rows:
            try:
                readable.append(Result.from_dict(rec.rows_to_record(r, r["experiment"], by_result[r["id"]])))
            except rec.UnreadableResult as e:
                unreadable.append(e)
        return readable, unreadable

    def get_result(self, result_id: str) -> Result | None:
        """Raises records.UnreadableResult when the stored row is damaged."""
        with self._tx(write=False) as conn:
            found, unreadable = self._select_records(conn, [results.c.id == result_id])
        if unreadable:
            raise unreadable[0]
        return found[0] if found else None

    def has_result(self, result_id: str) -> bool:
        with self._tx(write=False) as conn:
            return conn.execute(sa.select(results.c.id).where(results.c.id == result_id)).first() is not None

    def list_results(self, model=None, precision=None, sparsity=None, kv_cache=None, experiment=None,
                     status=None, ids=None) -> list[Result]:
        where = [col == value for col, value in (
            (results.c.model, model), (results.c.precision, precision), (results.c.sparsity, sparsity),
            (results.c.kv_cache, kv_cache), (experiments.c.name, experiment), (results.c.status, status),
        ) if value is not None]
        if ids is not None:
            where.append(results.c.id.in_(list(ids)))
        with self._tx(write=False) as conn:
            found, unreadable = self._select_records(conn, where)
        for e in unreadable:  # listed without them rather than not at all; the warning names each
            warnings.warn(f"{e} It is left out of this listing.", UnreadableResultWarning, stacklevel=2)
        return found

    def unreadable_results(self) -> dict[str, str]:
        """{result id: why it cannot be read} for every damaged result row (listings leave them out)."""
        with self._tx(write=False) as conn:
            _, unreadable = self._select_records(conn, [])
        return {e.result_id: e.why for e in unreadable}

    def delete_result(self, result_id: str) -> bool:
        with self._tx(write=True) as conn:
            conn.execute(sa.delete(metrics).where(metrics.c.result_id == result_id))
            gone = conn.execute(sa.delete(results).where(results.c.id == result_id)).rowcount > 0
            if gone:
                self._bump(conn, "results")
        return gone

    def results_frame(self):
        import numpy as np
        import pandas as pd

        base_cols = [c for c in rec.FRAME_COLUMNS if c not in ("experiment", "provenance")]
        query = (sa.select(*(results.c[c] for c in base_cols), experiments.c.name.label("experiment"))
                 .select_from(results.outerjoin(experiments)).order_by(results.c.created_at, results.c.id))
        with self._tx(write=False) as conn:
            base = _frame(_raw_rows(conn, query), base_cols + ["experiment"])
            long = _frame(_raw_rows(conn, sa.select(metrics.c.result_id, metrics.c.name, metrics.c.value)),
                          ["result_id", "name", "value"])
        base, long, unreadable = _drop_unreadable(base, long)
        base["provenance"] = np.where(base["speed_kind"] == "measured", "measured",
                                      base["accuracy_kind"].where(base["accuracy_kind"].notna(), base["speed_kind"]))
        base["created_at"] = pd.to_datetime(base["created_at"].astype(float), unit="s", utc=True)
        frame = base[list(rec.FRAME_COLUMNS)]
        if not long.empty:
            wide = long.pivot(index="result_id", columns="name", values="value").astype(float)
            wide = wide[sorted(wide.columns)]
            wide.columns.name = None
            frame = frame.join(wide, on="id")
        frame = frame.reset_index(drop=True)
        frame.attrs["unreadable"] = unreadable  # {id: why}: left out, for a page to mention
        return frame


def _drop_unreadable(base, long):
    """Leave out results whose creation time or a metric value is not a number (a damaged row),
    with a warning naming each: (base, long, {id: why})."""
    import pandas as pd

    unreadable = {}
    for frame, column, key, what in ((base, "created_at", "id", "its creation time"),
                                     (long, "value", "result_id", "a metric")):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        for rid, value in zip(frame.loc[bad, key], frame.loc[bad, column]):
            unreadable.setdefault(rid, f"{what} holds {str(value)[:40]!r}, not a number")
        frame[column] = values
    for rid, why in unreadable.items():
        warnings.warn(f"{rec.UnreadableResult(rid, why)} It is left out of this listing.",
                      UnreadableResultWarning, stacklevel=3)
    if unreadable:
        base = base[~base["id"].isin(unreadable)].copy()
        long = long[~long["result_id"].isin(unreadable)].copy()
    return base, long, unreadable
