"""Both rate limiters, the in-process one (SQLite) and the one shared by replicas in PostgreSQL, count the further
parts of a split message that `book` reports, as the provider does, and keep a refilling bucket (ntfy's) as one:
after a burst, the next message waits for one request to come back, not for the whole burst to age out."""

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


NTFY = [RateRule("ntfy:server", 60, 300.0, refills=True)]  # a burst of 60, then one every 5 s


async def check_refilling(limiter: RateLimiter) -> None:
    for i in range(60):
        assert await limiter.reserve(NTFY, 2000.0) == 0, i  # the whole burst at once
    # the 61st waits for one request to come back (5 s), not for the burst to age out (300 s)
    assert await limiter.reserve(NTFY, 2000.0) == pytest.approx(5.0)
    assert await limiter.reserve(NTFY, 2003.0) == pytest.approx(2.0)
    assert await limiter.reserve(NTFY, 2005.0) == 0
    assert await limiter.reserve(NTFY, 2005.0) == pytest.approx(5.0)
    await limiter.book(NTFY, 2010.0, 2)  # a split message's further parts take from it too
    assert await limiter.reserve(NTFY, 2010.0) == pytest.approx(10.0)
    # after a quiet 10 minutes the bucket is full again: a whole burst goes
    for i in range(60):
        assert await limiter.reserve(NTFY, 2700.0) == 0, i
    assert await limiter.reserve(NTFY, 2700.0) > 0
    # a message with two held before it takes the third slot to open, not the first
    assert await limiter.turn(NTFY, 2700.0, 2) == pytest.approx(15.0)
    for t in range(20):
        assert await limiter.reserve(GROUP, 3000.0 + t) == 0
    assert await limiter.turn(GROUP, 3020.0, 0) == pytest.approx(40.0)  # the first of the minute ages out
    assert await limiter.turn(GROUP, 3020.0, 3) == pytest.approx(43.0)  # the fourth
    assert await limiter.turn(GROUP, 3020.0, 21) == pytest.approx(101.0)  # a minute after the second


async def test_in_process_limiter_refills_one_request_at_a_time() -> None:
    await check_refilling(MemoryRateLimiter())


async def test_shared_limiter_refills_one_request_at_a_time(pg_url: str) -> None:
    store = Store(StorageSettings(url=pg_url))
    await store.migrate()
    try:
        await check_refilling(StoreRateLimiter(store))
    finally:
        await store.dispose()
