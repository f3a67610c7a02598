"""The store: SQLAlchemy Core tables and queries over SQLite (default) or PostgreSQL, one code path."""

from notifier.store.engine import Batch, Store, new_id

__all__ = ["Batch", "Store", "new_id"]
