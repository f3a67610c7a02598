"""The timeline: every decision and delivery attempt about a group, for "why did I (not) get this alert?".

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "timeline",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("group_hash", sa.String(64), nullable=False),
        sa.Column("group_key", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("notification_id", sa.String(26)),
        sa.Column("delivery_id", sa.String(26)),
    )
    op.create_index("ix_timeline_group", "timeline", ["group_hash", "at"])


def downgrade() -> None:
    op.drop_table("timeline")
