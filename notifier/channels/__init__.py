"""Channels: one module per provider, each a plug-in. A channel module holds its target's settings (a msgspec
struct), its templates and rendering entry, its provider's limits, and the Channel that sends; its `PLUGIN` record
is what the rest of the notifier knows of it, through the one list in `channels/registry.py`. A channel is built
per target (its own token, chat, server) and raises RetryableError or PermanentError, never anything else."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from notifier.clock import Clock
from notifier.domain import DeliveryReceipt, Message, RateRule, Severity
from notifier.errors import ContentRejected, DeliveryError, PermanentError, RetryableError
from notifier.templates import Renderer, Template

__all__ = [
    "Acknowledged",
    "Capabilities",
    "Channel",
    "ChannelPlugin",
    "RateRule",
    "Refusal",
    "Shown",
    "failure",
    "refusal_of_status",
]
T = TypeVar("T")


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


class ImageChannel(Channel, Protocol):
    """A channel whose capabilities say `images`."""

    async def send_image(self, message: Message, png: bytes, caption: str) -> DeliveryReceipt:
        """A picture in reply to `message.edit_ref`, without a sound (the text made one)."""
        ...


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """A message acknowledged on the provider's side (a Pushover emergency, on a phone): by whom, when (unix s)."""

    by: str
    at: float


class Refusal(StrEnum):
    """What a provider's failure means for the message, whichever provider said it."""

    RATE_LIMITED = "rate_limited"  # later, after the provider's retry-after
    UNAVAILABLE = "unavailable"  # later, with back-off: no answer, a timeout, 5xx, a temporary refusal
    CONTENT = "content"  # never in this form: the text itself is refused (the worker sends the minimal form)
    PERMANENT = "permanent"  # never: the target, the credentials or the request is wrong


def refusal_of_status(status: int | None) -> Refusal:
    """An HTTP answer's status as a refusal: no answer, 408 and 5xx are worth retrying, 429 waits for its
    retry-after, any other 4xx is permanent."""
    if status == 429:
        return Refusal.RATE_LIMITED
    if status is None or status == 408 or status >= 500:
        return Refusal.UNAVAILABLE
    return Refusal.PERMANENT


def failure(
    refusal: Refusal, said: str, *, retry_after: float | None = None, parts_done: int | None = None
) -> DeliveryError:
    """The error a channel raises for a failure: the one mapping every channel shares from what happened to what
    the worker does (retry after the provider's wait, retry with back-off, send the minimal form, or give up)."""
    if refusal is Refusal.RATE_LIMITED:
        return RetryableError(said, retry_after=retry_after if retry_after is not None else 1.0, parts_done=parts_done)
    if refusal is Refusal.UNAVAILABLE:
        return RetryableError(said, retry_after=retry_after, parts_done=parts_done)
    if refusal is Refusal.CONTENT:
        return ContentRejected(said, parts_done=parts_done)
    return PermanentError(said, parts_done=parts_done)


def _never_silent(_target: object, _severity: Severity) -> bool:
    return False


def _no_buttons(_target: object) -> bool:
    return False


class Shown(msgspec.Struct, frozen=True, kw_only=True):
    """One part of a message as its provider shows it, the same record for every channel: what `notifier render`
    and `check-config` print (`text`), what the web view draws (an email's `subject`, `html` in a sandboxed frame,
    Slack's `blocks` as (block type, text) lines), and the provider's own payload (`raw`, for `render --json`)."""

    text: str
    subject: str | None = None
    html: str | None = None
    blocks: list[tuple[str, str]] | None = None
    raw: Any = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a channel can do beyond sending."""

    edit: bool = False  # show a sent message again (Channel.edit), for the chat actions' acknowledgement and silence
    threads: bool = False  # a group's later messages reply to its first one
    splits: bool = False  # a long message goes out in several parts (parts_done counts them on a failure)
    digests: bool = False  # takes the receiver's digests (email)
    acknowledges: bool = False  # a person can acknowledge on the provider's side (Pushover's emergency receipts)
    images: bool = False  # a picture in reply to a sent message (Channel.send_image), for charts
    inline_images: bool = False  # a picture inside the message itself (Message.chart), for charts


@dataclass(frozen=True, slots=True)
class ChannelPlugin(Generic[T]):
    """What the notifier knows of a channel: the key of its targets under a receiver (`telegram:`), their settings
    type `T`, its templates, how to build its Channel for one target, how a message shows on it (`show`), what it
    can do (`capabilities`), and per target: whether a severity goes out without a sound (`silent`, Telegram's
    silent_severities) and whether it shows chat-action buttons (`buttons`; such a target can edit what it sent)."""

    name: str
    target: type[T]
    templates: tuple[Template, ...]
    build: Callable[[str, T, Renderer, Clock], Channel]
    show: Callable[[Renderer, Message, float], list[Shown]]
    capabilities: Capabilities = Capabilities()
    silent: Callable[[T, Severity], bool] = _never_silent
    buttons: Callable[[T], bool] = _no_buttons
