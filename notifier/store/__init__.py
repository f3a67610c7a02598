"""The store: SQLAlchemy Core tables and queries over SQLite (default) or PostgreSQL.

engine       the facade: Store (reads, writes through the group commit, migrations)
groupcommit  the write queue: many writes, one transaction and one disk flush
sqlite       SQLite's write path: one connection, a writer thread, the store's own checkpoints, the file claim
intake       the intake's SQL: what a batch of webhooks reads and writes, in the store's dialect
redelivery   the redelivery keys of the last window: in memory (SQLite) or a table (PostgreSQL)
repository   the outbox's, threads' and notifications' queries
housekeeping retention: deleting what is older than storage.retention
ids, urls, failures, payloads, tables
"""

from notifier.store.engine import Store
from notifier.store.groupcommit import Batch
from notifier.store.ids import new_id

__all__ = ["Batch", "Store", "new_id"]
