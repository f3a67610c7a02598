"""The log channel: each rendered notification as one JSON line on stdout (the embedded default's receiver)."""

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
        self._renderer = renderer
        self._clock = clock

    def rate_rules(self) -> list[RateRule]:
        return []

    async def send(self, message: Message) -> DeliveryReceipt:
        g = message.group
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
            "text": await asyncio.to_thread(self._text, message),
        }
        out = sys.stdout if self._stream == "stdout" else sys.stderr
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
        out.flush()
        return DeliveryReceipt(ref=message.delivery_id)

    def _text(self, message: Message) -> str:
        now = self._clock.now()
        return self._renderer.minimal_text(message, now) if message.minimal else self._renderer.log_text(message, now)

    async def aclose(self) -> None:
        return None
