"""Escalation chains of alert groups, and the Watchdog's sources.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "escalations",
        sa.Column("group_hash", sa.String(64), primary_key=True),
        sa.Column("route_path", sa.Text, primary_key=True),
        sa.Column("group_key", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("armed_at", sa.Double, nullable=False),
        sa.Column("started_at", sa.Double),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("due_at", sa.Double),
        sa.Column("steps", sa.Text, nullable=False),
        sa.Column("route_receivers", sa.Text, nullable=False),
        sa.Column("quiet_schedule", sa.Text),
        sa.Column("paged", sa.Text, nullable=False),
        sa.Column("notification_id", sa.String(26), nullable=False),
        sa.Column("ended", sa.Text),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_index("ix_escalations_state", "escalations", ["state"])
    op.create_table(
        "watchdogs",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("last_seen", sa.Double, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("missing_since", sa.Double),
        sa.Column("changed_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("watchdogs")
    op.drop_index("ix_escalations_state", "escalations")
    op.drop_table("escalations")
