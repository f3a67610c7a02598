"""Both rate limiters, the in-process one (SQLite) and the one shared by replicas in PostgreSQL, count the further
parts of a split message that `book` reports, as the provider does."""

from __future__ import annotations

import pytest

from notifier.delivery.ratelimit import MemoryRateLimiter, RateLimiter, StoreRateLimiter
from notifier.domain import RateRule
from notifier.settings import StorageSettings
from notifier.store import Store

GROUP = [RateRule("tg:bot:group:-100", 20, 60.0)]


async def check(limiter: RateLimiter) -> None:
    assert await limiter.reserve(GROUP, 1000.0) == 0  # a message split in six: the first part asked ...
    await limiter.book(GROUP, 1000.0, 5)  # ... and the other five are counted once sent
    for t in range(1, 15):
        assert await limiter.reserve(GROUP, 1000.0 + t) == 0, t
    # 20 went out in the minute that began at 1000: the next one waits until that minute is over
    assert await limiter.reserve(GROUP, 1015.0) == pytest.approx(45.0, abs=1.0)
    assert await limiter.reserve(GROUP, 1062.0) == 0


async def test_in_process_limiter_counts_booked_parts() -> None:
    await check(MemoryRateLimiter())


async def test_shared_limiter_counts_booked_parts(pg_url: str) -> None:
    store = Store(StorageSettings(url=pg_url))
    await store.migrate()
    try:
        await check(StoreRateLimiter(store))
    finally:
        await store.dispose()
