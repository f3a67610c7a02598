"""The store: SQLAlchemy Core tables and queries over SQLite (default) or PostgreSQL.

engine       the facade: Store (reads, writes through the group commit, migrations)
groupcommit  the write queue: many writes, one transaction and one disk flush
sqlite       SQLite's write path: one connection, a writer thread, the store's own checkpoints, the file claim
statements   the intake's statements, built once per dialect
redelivery   the redelivery keys of the last window: in memory (SQLite) or a table (PostgreSQL)
repository   the outbox's, threads' and notifications' queries
housekeeping retention: deleting what is older than storage.retention
ids, urls, failures, payloads, tables
"""

from notifier.store.engine import Store
from notifier.store.groupcommit import Batch
from notifier.store.ids import new_id

__all__ = ["Batch", "Store", "new_id"]
