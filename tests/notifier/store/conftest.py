"""The store under test, migrated, on SQLite and PostgreSQL (see store_url)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from notifier.settings import StorageSettings
from notifier.store import Store


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = Store(StorageSettings(url=store_url))
    await s.migrate()
    yield s
    await s.dispose()
