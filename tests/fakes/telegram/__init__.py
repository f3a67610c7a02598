"""A fake Telegram Bot API server: real HTTP on loopback, strict like the real one.

It checks the token and the method, the chat, the text's length after entity parsing (4096), and the HTML: only the
tags Telegram knows, balanced, and only its entities; anything else is 400 "can't parse entities". Tests can script
failures (429 with retry_after, 5xx, a migrated chat) and enforce the per-group flood limit. Every accepted message
is kept, with the time it arrived.
"""

from tests.fakes.telegram.messages import Failure, Photo, Sent
from tests.fakes.telegram.rules import EntityError, check_html, utf16
from tests.fakes.telegram.server import FakeTelegram, ThreadedFake

__all__ = ["EntityError", "Failure", "FakeTelegram", "Photo", "Sent", "ThreadedFake", "check_html", "utf16"]
