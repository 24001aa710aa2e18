"""Open a database for the store: URL checks, SQLite settings, schema migrations.

SQLite connections run in WAL mode with a busy timeout and foreign keys on. The driver's implicit
transactions are switched off and every store operation opens its own: `BEGIN IMMEDIATE` for writes
(so a read never has to upgrade to a write lock mid-transaction, which SQLite cannot wait for) and
plain `BEGIN` for reads.
"""

import re
import sqlite3
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from engine.errors import StoreError
from engine.store import diagnose
from engine.store.schema import SCHEMA_REVISION

BUSY_TIMEOUT_MS = 30_000
# PRAGMA quick_check reads every page: 0.16 s for an 84 MB store of 20,000 results on a 2-core CPU.
# Above this size it is skipped on open (reads still report damage when they meet it).
QUICK_CHECK_MAX_BYTES = 256 * 2**20
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
WRITE_OPTION = "tlab_write"  # connection execution option: next transaction is a write


def safe_url(url: str) -> str:
    """The URL as shown in messages: password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return "<unparseable URL>"


def create_store_engine(url: str) -> sa.Engine:
    """A SQLAlchemy engine for `url`, checked, configured and migrated to the current schema."""
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 - a non-numeric port fails here, not deep inside a driver
    except (sa.exc.ArgumentError, ValueError) as e:
        shown = re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)  # never print a password
        raise StoreError(f"'{shown}' is not a database URL ({e}). Use e.g. sqlite:////path/to/tlab.db "
                         "or postgresql://user@host/dbname in TLAB_STORE_URL.") from None
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed)
    else:
        try:
            engine = sa.create_engine(parsed, pool_pre_ping=True)
        except (ImportError, sa.exc.NoSuchModuleError) as e:
            raise StoreError(f"Cannot use the store {safe_url(url)}: its database driver is not "
                             f"installed ({e}). Install the driver (for PostgreSQL: pip install psycopg) "
                             "or unset TLAB_STORE_URL to use the local SQLite store.") from None
    try:
        migrate(engine, safe_url(url))
    except StoreError:
        engine.dispose()
        raise
    except sa.exc.SQLAlchemyError as e:
        engine.dispose()
        raise StoreError(failure_message(e, url)) from None
    return engine


def failure_message(exc: BaseException, url: str) -> str:
    """What went wrong with the store at `url` and what to do (read-only, full, locked, damaged...)."""
    path = None
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            path = sqlite_file(parsed)
    except (sa.exc.ArgumentError, ValueError):
        pass
    kind = diagnose.classify(exc)
    if kind == diagnose.CANT_OPEN and path is not None:
        kind = diagnose.cant_open_reason(path)
    detail = getattr(exc, "orig", None) or exc
    return diagnose.advice(kind, safe_url(url), path, str(detail))


def sqlite_file(parsed) -> Path | None:
    """The file of a SQLite URL, None for an in-memory database."""
    db = parsed.database
    if not db or db == ":memory:" or db.startswith("file::memory:"):
        return None
    return Path(db).expanduser()


def _sqlite_engine(parsed) -> sa.Engine:
    path = sqlite_file(parsed)
    if path is None:
        # One shared connection: each new connection to ":memory:" would be a new, empty database.
        engine = sa.create_engine(parsed, poolclass=StaticPool,
                                  connect_args={"check_same_thread": False})
    else:
        check_sqlite_file(path)
        engine = sa.create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see module docstring)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys = ON")
        if path is not None:
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")  # safe in WAL mode; commits skip fsync
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")

    return engine


def check_sqlite_file(path: Path) -> None:
    """Refuse (without touching it) a path that is not a usable SQLite database; create its folder."""
    what_to_do = (f"It was left untouched. Move it away (e.g. rename it to {path.name}.bad) or set "
                  "TLAB_HOME (or TLAB_STORE_URL) to use a store somewhere else.")
    if path.is_dir():
        raise StoreError(f"The results store path {path} is a folder, not a database file. {what_to_do}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"Cannot create the folder for the results store {path}: {e}. "
                         "Set TLAB_HOME to a writable folder.") from None
    if not path.exists() or path.stat().st_size == 0:
        return
    # Read-only probe through SQLite itself, before any connection that could write (the first one
    # switches the file to WAL): a foreign, damaged or read-only file fails here, unchanged. (Never
    # open() the file directly: closing any descriptor of a database file drops the POSIX locks that
    # this process's open SQLite connections hold on it.)
    try:
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            tables = {r[0] for r in probe.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
            problems = _quick_check(probe) if path.stat().st_size <= QUICK_CHECK_MAX_BYTES else []
        finally:
            probe.close()
    except sqlite3.DatabaseError as e:
        kind = diagnose.classify(e)
        if kind == diagnose.CANT_OPEN:
            kind = diagnose.cant_open_reason(path)
        if kind in (diagnose.READ_ONLY, diagnose.FULL, diagnose.LOCKED):
            raise StoreError(diagnose.advice(kind, str(path), path, str(e))) from None
        raise StoreError(f"The results store file {path} is not a readable SQLite database ({e}); it "
                         f"may be damaged or another program's file. {what_to_do}") from None
    if tables and "alembic_version" not in tables:
        raise StoreError(f"The file {path} is a SQLite database with other tables "
                         f"({', '.join(sorted(tables)[:5])}), not a Tradeoff Lab store. {what_to_do}")
    if problems:
        raise StoreError(diagnose.damaged_advice(str(path), path, "PRAGMA quick_check: " + "; ".join(problems)))


def _quick_check(conn: sqlite3.Connection) -> list[str]:
    """SQLite's own consistency check of every page (not index contents): [] when it finds nothing."""
    rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
    return [] if rows == ["ok"] else [line for r in rows for line in r.splitlines() if not line.startswith("***")]


def _current_revision(conn) -> tuple[str | None, set[str]]:
    tables = set(sa.inspect(conn).get_table_names())
    if "alembic_version" not in tables:
        return None, tables
    rev = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    return rev, tables


def known_revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    return [s.revision for s in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()]


def migrate(engine: sa.Engine, shown_url: str) -> None:
    """Bring the schema to SCHEMA_REVISION; refuse foreign databases and newer schemas."""
    with engine.connect() as conn, conn.begin():
        rev, tables = _current_revision(conn)
    if rev == SCHEMA_REVISION:
        return  # fast path: no alembic import
    if rev is None and tables:
        raise StoreError(f"The database {shown_url} already has tables ({', '.join(sorted(tables)[:5])}) "
                         "but is not a Tradeoff Lab store. Point TLAB_STORE_URL (or TLAB_HOME) at an "
                         "empty or Tradeoff Lab database.")
    if rev is not None and rev not in known_revisions():
        raise StoreError(f"The results store {shown_url} was written by a newer version of Tradeoff Lab "
                         f"(schema revision {rev}; this version knows up to {SCHEMA_REVISION}). "
                         "Upgrade Tradeoff Lab (pip install -U tradeoff-lab), or set TLAB_HOME / "
                         "TLAB_STORE_URL to use another store.")
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():  # all migrations in one transaction; a concurrent opener waits, then finds head
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
