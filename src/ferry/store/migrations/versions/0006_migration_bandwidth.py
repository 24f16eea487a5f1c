"""the bandwidth a host's live moves may use on the migration network

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as hosts:
        hosts.add_column(sa.Column("migration_bandwidth_mibps", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("hosts") as hosts:
        hosts.drop_column("migration_bandwidth_mibps")
