"""baseline: the schema ferry had before its schema was versioned

A database created before then has these tables but no alembic_version; the
store stamps it with this revision instead of running it.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# The unfinished job states of this revision, frozen: a later change of JobState
# needs a revision of its own that rebuilds the index.
_UNFINISHED = sa.text("state IN ('queued', 'running', 'cancelling')")


def upgrade() -> None:
    op.create_table(
        "hosts",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("uri", sa.String(512), nullable=False),
        sa.Column("migration_address", sa.String(255)),
        sa.Column("migration_enabled", sa.Boolean, nullable=False),
        sa.Column("maintenance", sa.Boolean, nullable=False),
        sa.Column("max_migrations", sa.Integer, nullable=False),
        sa.Column("memory_limit_mib", sa.Integer),
        sa.Column("migration_interface", sa.String(64)),
        sa.Column("migration_network_isolated", sa.Boolean, nullable=False),
        sa.Column("cluster", sa.String(64)),
    )
    op.create_table(
        "clusters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("evc", sa.Text),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("vm", sa.String(255), nullable=False),
        sa.Column("source_host", sa.String(64), nullable=False),
        sa.Column("dest_host", sa.String(64)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("progress", sa.Text, nullable=False),
        sa.Column("report", sa.Text, nullable=False),
        sa.Column("vm_uuid", sa.String(36)),
    )
    op.create_index("jobs_one_move_per_vm", "jobs", ["vm_uuid"], unique=True,
                    sqlite_where=_UNFINISHED, postgresql_where=_UNFINISHED)
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id"])


def downgrade() -> None:
    op.drop_table("job_events")
    op.drop_table("jobs")
    op.drop_table("clusters")
    op.drop_table("hosts")
