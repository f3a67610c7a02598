"""What the fake Bot API keeps: the messages and pictures it took, and the failures a test scripts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Sent:
    """One message the fake accepted."""

    message_id: int
    chat_id: int | str
    text: str
    parse_mode: str | None
    disable_notification: bool
    message_thread_id: int | None
    reply_to_message_id: int | None
    reply_markup: dict[str, Any] | None
    at: float
    method: str = "sendMessage"


@dataclass
class Photo:
    """A picture the fake took (sendPhoto), with the size its PNG header gives."""

    message_id: int
    chat_id: int | str
    caption: str
    png: bytes
    width: int
    height: int
    reply_to_message_id: int | None
    disable_notification: bool
    at: float


@dataclass
class Failure:
    status: int
    description: str
    retry_after: int | None = None
    migrate_to: int | None = None
