"""`make stack --chat-actions` end to end: the demo's crash pages the stack's fake Telegram with Ack and Silence
buttons; pressing Silence 1h the way the README shows (curl against the fake) creates the silence in the stack's
Alertmanager, and the message then shows it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from scripts.stack import Stack
from tests.helpers import binary, run
from tests.monitoring.test_stack_e2e import all_ports, services, wait


def test_silence_pressed_in_the_stacks_fake_telegram_reaches_its_alertmanager(tmp_path: Path) -> None:
    services()
    chat = {"fake": True, "token": "123456:stack-fake", "chat": -1001234567890, "user": 7001}
    s = Stack(tmp_path, all_ports(), scenario="crash", fast=True, chat=chat)
    try:
        s.start()
        fake = f"http://127.0.0.1:{s.ports.telegram}"

        def critical() -> dict[str, Any] | None:
            messages = httpx.get(f"{fake}/_fake/messages", timeout=5).json()["messages"]
            return next((m for m in messages if "CriticalDrawdown" in m["text"] and m["buttons"]), None)

        wait(lambda: critical() is not None, 120, "CriticalDrawdown with buttons at the stack's fake Telegram")
        message = critical()
        assert message is not None and message["buttons"] == ["Ack", "Silence 1h", "Silence 4h", "Silence 24h"]
        pressed = httpx.post(
            f"{fake}/_fake/press",
            json={"message_id": message["message_id"], "button": "Silence 1h", "user": "@alice"},
            timeout=5,
        )
        assert pressed.status_code == 200

        am = f"http://127.0.0.1:{s.ports.alertmanager}"

        def silences() -> list[dict[str, Any]]:
            out = run(binary("amtool"), "silence", "query", "--alertmanager.url", am, "-o", "json")
            result: list[dict[str, Any]] = json.loads(out.stdout or "[]")
            return result

        wait(lambda: bool(silences()), 30, "the silence in the stack's Alertmanager")
        silence = silences()[0]
        assert silence["createdBy"] == "@alice via Telegram"
        assert {"name": "alertname", "value": "CriticalDrawdown", "isRegex": False, "isEqual": True} in silence[
            "matchers"
        ]

        def shown() -> bool:
            messages = httpx.get(f"{fake}/_fake/messages", timeout=5).json()
            return any(
                m["message_id"] == message["message_id"] and "🔕 silenced until" in m["text"]
                for m in messages["messages"]
            ) and any(a.startswith("Silenced until") for a in messages["answers"])

        wait(shown, 30, "the message showing the silence")

        # why was it (not) told? the group's decisions, from the timeline
        said = httpx.post(f"{fake}/_fake/say", json={"text": "/why CriticalDrawdown"}, timeout=5)
        assert said.status_code == 200

        def why() -> str:
            messages = httpx.get(f"{fake}/_fake/messages", timeout=5).json()["messages"]
            return next((m["text"] for m in messages if "sent to console/telegram/0" in m["text"]), "")

        wait(lambda: bool(why()), 30, "the answer to /why")
        assert "CriticalDrawdown" in why() and "queued for console/telegram/0" in why()
    finally:
        s.stop()
