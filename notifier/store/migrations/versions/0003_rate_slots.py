"""Rate limits shared by replicas: one row per message sent into a rate-limit bucket.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_slots",
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
    )
    op.create_index("ix_rate_slots_key_at", "rate_slots", ["key", "at"])


def downgrade() -> None:
    op.drop_table("rate_slots")
