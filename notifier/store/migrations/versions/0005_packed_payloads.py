"""Large notification bodies stored compressed (see notifier/store/payloads.py).

A body over one page goes into `payload_zlib`, and `payload` holds ''. Rows written before stay as they are.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notifications", sa.Column("payload_zlib", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    op.drop_column("notifications", "payload_zlib")
