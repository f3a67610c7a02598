"""Rate limits that refill one message at a time (ntfy's request limit).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("full_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
