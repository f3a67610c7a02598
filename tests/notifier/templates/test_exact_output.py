"""What a person reads, to the character, for a captured firing group and its resolve on every channel: the files in
`expected/` are the messages as they must look (reviewed by eye when a template changes on purpose)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from notifier.alertmanager import decode_payload, to_group
from notifier.channels import email as email_channel
from notifier.channels import log as log_channel
from notifier.channels import slack as slack_channel
from notifier.channels import telegram as telegram_channel
from notifier.domain import Change, Message
from notifier.templates import Renderer
from tests.helpers import fixture_bytes

EXPECTED = Path(__file__).parent / "expected"
NOW = 1795675980.0  # 2026-11-26T06:53:00Z, 2h 47m after the alerts started
CASES = {
    "firing": ("01-critical-firing-two-alerts.json", Change(new=2)),
    "resolved": ("04-critical-all-resolved.json", Change(resolved=2)),
}


def message(case: str) -> Message:
    name, change = CASES[case]
    group = to_group(decode_payload(fixture_bytes(name)))
    return Message(delivery_id="d", receiver="r", target="t", group=group, change=change)


def expected(case: str, channel: str) -> str:
    return next(EXPECTED.glob(f"{case}.{channel}.*")).read_text(encoding="utf-8")


@pytest.mark.parametrize("case", CASES)
def test_telegram(case: str) -> None:
    parts = telegram_channel.render(Renderer(), message(case), NOW)
    assert "\n--- part ---\n".join(parts) + "\n" == expected(case, "telegram")


@pytest.mark.parametrize("case", CASES)
def test_slack(case: str) -> None:
    payloads = [p.payload() for p in slack_channel.render(Renderer(), message(case), NOW)]
    assert json.dumps(payloads, indent=2, ensure_ascii=False) + "\n" == expected(case, "slack")


@pytest.mark.parametrize("case", CASES)
def test_email(case: str) -> None:
    e = email_channel.render(Renderer(), message(case), NOW)
    assert f"Subject: {e.subject}\n\n{e.text}" == expected(case, "email")


@pytest.mark.parametrize("case", CASES)
def test_log(case: str) -> None:
    assert log_channel.render(Renderer(), message(case), NOW) + "\n" == expected(case, "log")


def test_infrastructure_labels_are_hidden_unless_the_receiver_shows_them() -> None:
    text = log_channel.render(Renderer(), message("firing"), NOW)
    assert "instance" not in text and "job" not in text and "strategy: dca" in text
    text = log_channel.render(Renderer(hide_labels=["strategy"]), message("firing"), NOW)
    assert "instance: bot-exporter:9100" in text and "job: traderagent-bot" in text and "strategy" not in text
