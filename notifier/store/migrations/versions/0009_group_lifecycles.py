"""Per group, the newest lifecycle known of each alert: what makes a late copy from an Alertmanager peer stale.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "group_lifecycles",
        sa.Column("group_hash", sa.String(64), primary_key=True),
        sa.Column("lifecycles", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("group_lifecycles")
