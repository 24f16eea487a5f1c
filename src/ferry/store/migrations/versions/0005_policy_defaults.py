"""the convergence policy a cluster's and a VM's moves run with unless one is asked

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("clusters") as clusters:
        clusters.add_column(sa.Column("migration_policy", sa.String(32)))
    op.create_table(
        "vm_settings",
        sa.Column("vm_uuid", sa.String(36), primary_key=True),
        sa.Column("migration_policy", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("vm_settings")
    with op.batch_alter_table("clusters") as clusters:
        clusters.drop_column("migration_policy")
