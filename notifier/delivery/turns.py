"""First come, first served behind a rate limit, within one worker: its messages to one target ask the rate limiter
one at a time, in the order it took them, each once the one before has its place (a slot booked, or held in the
outbox). A held message then counts every older one already waiting (store/ratelimit.waiting_ahead) and tries
again in its turn behind them, instead of all of them at the moment the next slot opens, where the quickest would
take it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Turn:
    """A message's place among the worker's messages to its target: it asks the rate limiter once `before` is set,
    and sets `placed` once it has its own place (or whatever became of it)."""

    before: asyncio.Event | None
    placed: asyncio.Event

    async def wait(self) -> None:
        if self.before is not None:
            await self.before.wait()


class Turns:
    """Per target, the last turn handed out."""

    def __init__(self) -> None:
        self._last: dict[str, asyncio.Event] = {}

    def next(self, target: str) -> Turn:
        """The turn of a message taken now for `target`, behind the one taken before it."""
        before = self._last.get(target)
        turn = Turn(before=None if before is None or before.is_set() else before, placed=asyncio.Event())
        self._last[target] = turn.placed
        return turn
