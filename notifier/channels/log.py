"""The log channel: each rendered notification on stdout (the embedded default's receiver): as text a person reads
when the stream is a terminal, as one JSON line per notification when a program reads it (or as configured)."""

from __future__ import annotations

import asyncio
import json
import sys

from notifier.channels import RateRule
from notifier.clock import Clock
from notifier.domain import DeliveryReceipt, Message
from notifier.settings import LogTarget
from notifier.templates import Renderer


class LogChannel:
    """Prints what would be sent, so a newcomer sees the whole pipeline work without any account."""

    name = "log"

    def __init__(self, target: LogTarget, renderer: Renderer, clock: Clock) -> None:
        self._stream = target.stream
        self._format = target.format
        self._renderer = renderer
        self._clock = clock

    def rate_rules(self) -> list[RateRule]:
        return []

    async def send(self, message: Message) -> DeliveryReceipt:
        g = message.group
        text = await asyncio.to_thread(self._text, message)
        out = sys.stdout if self._stream == "stdout" else sys.stderr
        as_text = self._format == "text" or (self._format == "auto" and out.isatty())
        if as_text:
            heading = f"── {message.target} · {message.delivery_id}{' · silent' if message.silent else ''} "
            out.write(f"{heading:─<72}\n{text}\n\n")
        else:
            line = {
                "event": "notification",
                "receiver": message.receiver,
                "target": message.target,
                "delivery_id": message.delivery_id,
                "group_key": g.group_key,
                "status": g.status.value,
                "severity": g.severity.value,
                "silent": message.silent,
                "alerts": len(g.alerts),
                "text": text,
            }
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
        out.flush()
        return DeliveryReceipt(ref=message.delivery_id)

    def _text(self, message: Message) -> str:
        now = self._clock.now()
        return self._renderer.minimal_text(message, now) if message.minimal else self._renderer.log_text(message, now)

    async def aclose(self) -> None:
        return None
