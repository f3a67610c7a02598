"""Acting scoped to a group: the receivers of each alert group (who may act on it), the silences this notifier made
(the only ones it lists and expires), requests already handled (Slack and Telegram replays), and the web view's
sessions (so that a logout or a removed user ends them everywhere).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chat_actions") as batch:  # action ids are random now, and longer
        batch.alter_column("id", type_=sa.String(32), existing_type=sa.String(24), existing_nullable=False)
    with op.batch_alter_table("alert_groups") as batch:
        batch.add_column(sa.Column("receivers", sa.Text, nullable=False, server_default="[]"))
    op.create_table(
        "own_silences",
        sa.Column("silence_id", sa.Text, primary_key=True),
        sa.Column("group_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("ends_at", sa.Double, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_index("ix_own_silences_ends", "own_silences", ["ends_at"])
    op.create_table(
        "seen_requests",
        sa.Column("key", sa.String(80), primary_key=True),
        sa.Column("expires_at", sa.Double, nullable=False),
    )
    op.create_table(
        "ui_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user", sa.Text, nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ui_sessions")
    op.drop_table("seen_requests")
    op.drop_index("ix_own_silences_ends", "own_silences")
    op.drop_table("own_silences")
    with op.batch_alter_table("alert_groups") as batch:
        batch.drop_column("receivers")
    with op.batch_alter_table("chat_actions") as batch:
        batch.alter_column("id", type_=sa.String(24), existing_type=sa.String(32), existing_nullable=False)
