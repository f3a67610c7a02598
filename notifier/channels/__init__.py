"""Channels: one module per provider behind one protocol. A channel is built per target (its own token, chat,
server) and knows its provider's limits; it raises RetryableError or PermanentError, never anything else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from notifier.domain import DeliveryReceipt, Message


@dataclass(frozen=True, slots=True)
class RateRule:
    """At most `count` messages per `per` seconds into the bucket `key` (shared by every target that names it)."""

    key: str
    count: int
    per: float


class Channel(Protocol):
    """Sends a rendered message to one target."""

    name: str

    def rate_rules(self) -> list[RateRule]: ...

    async def send(self, message: Message) -> DeliveryReceipt: ...

    async def aclose(self) -> None: ...
