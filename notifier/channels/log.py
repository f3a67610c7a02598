"""The log channel: each rendered notification on stdout (the embedded default's receiver): as text a person reads
when the stream is a terminal, as one JSON line per notification when a program reads it (or as configured)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Literal

from notifier.channels import ChannelPlugin, RateRule, Refusal, Shown, failure
from notifier.clock import Clock
from notifier.configtypes import Strict
from notifier.domain import DeliveryReceipt, Message
from notifier.templates import Renderer, Template

TEMPLATE = Template("log", "text", "text.j2")


class LogTarget(Strict, kw_only=True):
    stream: Literal["stdout", "stderr"] = "stdout"
    # auto: the rendered text when the stream is a terminal (a person reads it), a JSON line per notification when
    # it is a file or a pipe (a program reads it)
    format: Literal["auto", "text", "json"] = "auto"


def render(renderer: Renderer, message: Message, now: float) -> str:
    """The message as plain text, as the log prints it."""
    return renderer.template(TEMPLATE).render(renderer.context(message, now)).strip()


class LogChannel:
    """Prints what would be sent, so a newcomer sees the whole pipeline work without any account."""

    name = "log"

    def __init__(self, key: str, target: LogTarget, renderer: Renderer, clock: Clock) -> None:
        self._stream = target.stream
        self._format = target.format
        self._renderer = renderer
        self._clock = clock

    def rate_rules(self) -> list[RateRule]:
        return []

    async def send(self, message: Message) -> DeliveryReceipt:
        text = await asyncio.to_thread(self._text, message)
        try:
            self._write(message, text)
        except (OSError, ValueError) as exc:  # a closed pipe, a full disk under a redirected stream
            raise failure(Refusal.UNAVAILABLE, f"the log stream cannot be written: {type(exc).__name__}") from None
        return DeliveryReceipt(ref=message.delivery_id)

    def _write(self, message: Message, text: str) -> None:
        g = message.group
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

    def _text(self, message: Message) -> str:
        now = self._clock.now()
        return self._renderer.minimal_text(message, now) if message.minimal else render(self._renderer, message, now)

    async def edit(self, message: Message) -> DeliveryReceipt:
        raise failure(Refusal.PERMANENT, "this channel cannot edit a message it sent")

    async def aclose(self) -> None:
        return None


def _show(renderer: Renderer, message: Message, now: float) -> list[Shown]:
    text = render(renderer, message, now)
    return [Shown(text=text, raw=text)]


PLUGIN: ChannelPlugin[LogTarget] = ChannelPlugin(
    name="log",
    target=LogTarget,
    templates=(TEMPLATE,),
    build=LogChannel,
    show=_show,
)
