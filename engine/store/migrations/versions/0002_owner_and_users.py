"""Sign-in and ownership: an `owner` on jobs and results ("local" for rows written before), and users.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN with a constant default: SQLite and PostgreSQL fill existing rows without a table copy.
    for table in ("jobs", "results"):
        op.add_column(table, sa.Column("owner", sa.String(200), nullable=False, server_default="local"))
    op.create_table(
        "users",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("password_hash", sa.String(300), nullable=True),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("users")
    for table in ("results", "jobs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("owner")
