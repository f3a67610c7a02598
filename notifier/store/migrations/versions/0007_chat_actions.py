"""Chat actions: alert groups, the actions behind buttons, acknowledgements, silences made from the chat, the log of
every action, and leases (one Telegram poller among replicas).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_groups",
        sa.Column("group_hash", sa.String(64), primary_key=True),
        sa.Column("am_receiver", sa.Text, nullable=False),
        sa.Column("group_key", sa.Text, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("firing", sa.Integer, nullable=False),
        sa.Column("firing_since", sa.Double),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_index("ix_alert_groups_firing", "alert_groups", ["firing", "updated_at"])
    op.create_table(
        "chat_actions",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column("group_hash", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("duration", sa.Double),
        sa.Column("silence_id", sa.Text),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_index("ix_chat_actions_created", "chat_actions", ["created_at"])
    op.create_table(
        "group_acks",
        sa.Column("group_hash", sa.String(64), primary_key=True),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
    )
    op.create_table(
        "group_silences",
        sa.Column("group_hash", sa.String(64), primary_key=True),
        sa.Column("silence_id", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("until", sa.Double, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
    )
    op.create_table(
        "action_log",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("group_hash", sa.String(64)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_action_log_at", "action_log", ["at"])
    op.create_table(
        "leases",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("until", sa.Double, nullable=False),
    )


def downgrade() -> None:
    for table in ("leases", "action_log", "group_silences", "group_acks", "chat_actions", "alert_groups"):
        op.drop_table(table)
