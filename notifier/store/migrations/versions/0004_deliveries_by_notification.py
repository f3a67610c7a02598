"""An index of messages by notification.

Housekeeping deletes a notification only when no message refers to it, and SQLite checks the same foreign key on
every such delete: without this index both scan the whole deliveries table for each notification.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_notification", "deliveries", ["notification_id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_notification", "deliveries")
