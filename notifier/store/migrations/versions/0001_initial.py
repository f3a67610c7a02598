"""The initial schema: notifications, intake keys, the delivery outbox, threads and per-receiver group state.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("received_at", sa.Double, nullable=False),
        sa.Column("am_receiver", sa.Text, nullable=False),
        sa.Column("group_key", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("alert_count", sa.Integer, nullable=False),
        sa.Column("redelivery_key", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index("ix_notifications_received_at", "notifications", ["received_at"])
    op.create_table(
        "intake_keys",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("notification_id", sa.String(26), nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("notification_id", sa.String(26), sa.ForeignKey("notifications.id"), nullable=False),
        sa.Column("receiver", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("group_key", sa.Text, nullable=False),
        sa.Column("group_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("silent", sa.Boolean, nullable=False),
        sa.Column("change", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("parts_sent", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("next_attempt_at", sa.Double, nullable=False),
        sa.Column("sent_at", sa.Double),
        sa.Column("last_error", sa.Text),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", sa.Double),
        sa.Column("provider_ref", sa.Text),
    )
    op.create_index("ix_deliveries_state_due", "deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_deliveries_target_group", "deliveries", ["target", "group_hash", "state"])
    op.create_index(
        "uq_deliveries_one_pending",
        "deliveries",
        ["target", "group_hash"],
        unique=True,
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_table(
        "threads",
        sa.Column("target", sa.Text, primary_key=True),
        sa.Column("group_hash", sa.String(64), primary_key=True),
        sa.Column("provider_ref", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_table(
        "group_state",
        sa.Column("receiver", sa.Text, primary_key=True),
        sa.Column("group_hash", sa.String(64), primary_key=True),
        sa.Column("group_key", sa.Text, nullable=False),
        sa.Column("alerts", sa.Text, nullable=False),
        sa.Column("last_sent_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    for name in ("group_state", "threads", "deliveries", "intake_keys", "notifications"):
        op.drop_table(name)
