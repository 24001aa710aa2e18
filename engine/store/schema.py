"""Tables of the results store (SQLAlchemy Core). Migrations in `migrations/versions` create them;
a test checks that the migrated database matches these definitions.

Times are stored as UNIX seconds (float) so staleness checks are plain arithmetic on any database;
the store's dicts expose them as ISO 8601 strings.
"""

import sqlalchemy as sa

from engine.auth import DEFAULT_OWNER

# The newest migration revision this code writes and reads.
SCHEMA_REVISION = "0002"

metadata = sa.MetaData()

# Jobs and results have an `owner`: who started the job (engine.auth); "local" without sign-in and for
# rows written before sign-in existed.

experiments = sa.Table(
    "experiments", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("model", sa.String(500), nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

results = sa.Table(
    "results", metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # the spec hash
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id", ondelete="SET NULL"),
              nullable=True, index=True),
    sa.Column("model", sa.String(500), nullable=False, index=True),
    sa.Column("precision", sa.String(32), nullable=False),
    sa.Column("sparsity", sa.String(32), nullable=False),
    sa.Column("kv_cache", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("device", sa.String(200), nullable=True),
    # Provenance kinds and backend are copied out of the JSON so the results frame needs no JSON parsing.
    sa.Column("accuracy_kind", sa.String(16), nullable=True),
    sa.Column("speed_kind", sa.String(16), nullable=True),
    sa.Column("backend", sa.String(100), nullable=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("versions", sa.JSON, nullable=False),
    sa.Column("timings", sa.JSON, nullable=False),
    sa.Column("provenance", sa.JSON, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("owner", sa.String(200), nullable=False, server_default=DEFAULT_OWNER),
)

# One row per (result, metric): the frame is built with one SELECT and a pandas pivot, and units live
# next to their values.
metrics = sa.Table(
    "metrics", metadata,
    sa.Column("result_id", sa.String(64), sa.ForeignKey("results.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("unit", sa.String(32), nullable=True),
)

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fn", sa.String(300), nullable=False),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("progress", sa.Float, nullable=False),
    sa.Column("stage", sa.String(300), nullable=False),
    sa.Column("log", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("result_ids", sa.JSON, nullable=False),
    sa.Column("pid", sa.Integer, nullable=True),  # the job's own child process
    sa.Column("worker_id", sa.String(64), nullable=True),
    sa.Column("worker_pid", sa.Integer, nullable=True),
    sa.Column("host", sa.String(255), nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("owner", sa.String(200), nullable=False, server_default=DEFAULT_OWNER),
)

workers = sa.Table(
    "workers", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("current_job_id", sa.Integer, nullable=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    sa.Column("stopped_at", sa.Float, nullable=True),
)

# Accounts for password sign-in (TLAB_AUTH=password) and the administrator flag for any sign-in.
# The password is stored only as a salted scrypt hash (engine.auth.hash_password); NULL: no password
# (an OIDC identity that is only listed to be an administrator).
users = sa.Table(
    "users", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("password_hash", sa.String(300), nullable=True),
    sa.Column("is_admin", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Counters bumped in the same transaction as every change: a cheap cache key for the app.
revisions = sa.Table(
    "revisions", metadata,
    sa.Column("scope", sa.String(16), primary_key=True),  # "results" or "jobs"
    sa.Column("value", sa.Integer, nullable=False),
)
