"""The log channel: the rendered text for a person at a terminal, a JSON line per notification for a program."""

from __future__ import annotations

import io
import json
import sys

import pytest

from notifier.channels.log import LogChannel, LogTarget
from notifier.clock import FrozenClock
from notifier.templates import Renderer
from tests.notifier.templates.test_exact_output import NOW, expected, message


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("fmt", "tty", "as_text"),
    [("auto", True, True), ("auto", False, False), ("json", True, False), ("text", False, True)],
)
async def test_text_for_a_terminal_json_for_a_program(
    monkeypatch: pytest.MonkeyPatch, fmt: str, tty: bool, as_text: bool
) -> None:
    out = Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    channel = LogChannel("t", LogTarget(format=fmt), Renderer(), FrozenClock(NOW))  # type: ignore[arg-type]
    await channel.send(message("firing"))
    written = out.getvalue()
    if as_text:
        heading, _, body = written.partition("\n")
        assert heading.startswith("── t · d ") and heading.endswith("─")
        assert body == expected("firing", "log") + "\n"
    else:
        line = json.loads(written)
        assert line["event"] == "notification" and line["alerts"] == 2 and line["severity"] == "critical"
        assert line["text"] + "\n" == expected("firing", "log")
