"""durable jobs: a job's owner, lease, request and slots; servers; job resources

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Batch mode: SQLite alters a table by copying it where ALTER TABLE cannot.
    with op.batch_alter_table("jobs") as jobs:
        jobs.add_column(sa.Column("owner", sa.String(36)))
        jobs.add_column(sa.Column("lease_until", sa.Float))
        jobs.add_column(sa.Column("spec", sa.Text, nullable=False, server_default="{}"))
        jobs.add_column(sa.Column("slot_hosts", sa.Text, nullable=False, server_default="[]"))
        jobs.add_column(sa.Column("cancel_requested", sa.Boolean, nullable=False,
                                  server_default=sa.false()))
        jobs.add_column(sa.Column("parent_id", sa.String(36)))
        jobs.create_index("jobs_queue", ["state", "created_at"])
    op.create_table(
        "servers",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False),
        sa.Column("stopped_at", sa.Float),
    )
    op.create_table(
        "job_resources",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("host", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("pool", sa.String(255)),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("path", sa.Text),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_job_resources_job_id", "job_resources", ["job_id"])


def downgrade() -> None:
    op.drop_table("job_resources")
    op.drop_table("servers")
    with op.batch_alter_table("jobs") as jobs:
        jobs.drop_index("jobs_queue")
        for column in ("parent_id", "cancel_requested", "slot_hosts", "spec", "lease_until",
                       "owner"):
            jobs.drop_column(column)
