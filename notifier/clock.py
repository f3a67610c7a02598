"""Time for the whole notifier. Nothing calls datetime.now() directly: tests pass a FrozenClock and step it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Wall time (unix seconds) and sleeping, so that tests can freeze and step both."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def iso(ts: float | None) -> str | None:
    return None if ts is None else to_datetime(ts).isoformat().replace("+00:00", "Z")


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FrozenClock:
    """A clock that moves only when told to; sleepers wake when `advance` passes their deadline."""

    def __init__(self, start: float) -> None:
        self._now = start
        self._changed = asyncio.Condition()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        deadline = self._now + max(0.0, seconds)
        async with self._changed:
            await self._changed.wait_for(lambda: self._now >= deadline)

    async def advance(self, seconds: float) -> None:
        async with self._changed:
            self._now += seconds
            self._changed.notify_all()
        await asyncio.sleep(0)

    async def set(self, ts: float) -> None:
        await self.advance(ts - self._now)
