"""Email digests: collected items and the ticks taken.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "digest_items",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("receiver", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("starts_at", sa.String(40), nullable=False),
        sa.Column("ends_at", sa.String(40)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("alertname", sa.Text, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("generator_url", sa.Text, nullable=False),
        sa.Column("first_seen", sa.Double, nullable=False),
        sa.Column("last_seen", sa.Double, nullable=False),
    )
    op.create_index("ux_digest_items_episode", "digest_items", ["receiver", "fingerprint", "starts_at"], unique=True)
    op.create_index("ix_digest_items_seen", "digest_items", ["receiver", "last_seen"])
    op.create_table(
        "digest_runs",
        sa.Column("receiver", sa.Text, primary_key=True),
        sa.Column("tick_at", sa.Double, primary_key=True),
        sa.Column("ran_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("digest_runs")
    op.drop_table("digest_items")
