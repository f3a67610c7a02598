"""Channels: one module per provider, each a plug-in. A channel module holds its target's settings (a msgspec
struct), its templates and rendering entry, its provider's limits, and the Channel that sends; its `PLUGIN` record
is what the rest of the notifier knows of it, through the one list in `channels/registry.py`. A channel is built
per target (its own token, chat, server) and raises RetryableError or PermanentError, never anything else."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from notifier.clock import Clock
from notifier.domain import DeliveryReceipt, Message, Severity
from notifier.templates import Renderer, Template


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

    async def edit(self, message: Message) -> DeliveryReceipt:
        """Show a sent message (`message.edit_ref`) again as `message` renders it now: its group's acknowledgement
        and silence, and the buttons that fit them. Channels that cannot edit raise PermanentError."""
        ...

    async def aclose(self) -> None: ...


def _never_silent(_target: Any, _severity: Severity) -> bool:
    return False


def _no_actions(_target: Any) -> bool:
    return False


def _as_text(item: Any) -> str:
    return item if isinstance(item, str) else json.dumps(item, indent=2, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class ChannelPlugin:
    """What the notifier knows of a channel: the key of its targets under a receiver (`telegram:`), their settings
    type, its templates, how to build its Channel for one target, and what `notifier render` and `check-config`
    show of a message (`preview`: JSON-able items; `describe`: one item as a person reads it)."""

    name: str
    target: type[Any]
    templates: tuple[Template, ...]
    build: Callable[[str, Any, Renderer, Clock], Channel]
    preview: Callable[[Renderer, Message, float], list[Any]]
    describe: Callable[[Any], str] = _as_text
    silent: Callable[[Any, Severity], bool] = _never_silent  # quiet by the target's own settings (Telegram)
    digests: bool = False  # takes the receiver's digests (email)
    acts: Callable[[Any], bool] = _no_actions  # the target shows chat-action buttons and can edit what it sent
