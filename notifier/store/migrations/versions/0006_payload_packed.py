"""The column of packed bodies named for what it holds: `payload_zlib` becomes `payload_packed` (Zstandard since
0005's release; zlib in rows written before, which the store still reads).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # RENAME COLUMN: PostgreSQL, and SQLite since 3.25, in place (no copy of the table)
    op.execute("ALTER TABLE notifications RENAME COLUMN payload_zlib TO payload_packed")


def downgrade() -> None:
    op.execute("ALTER TABLE notifications RENAME COLUMN payload_packed TO payload_zlib")
