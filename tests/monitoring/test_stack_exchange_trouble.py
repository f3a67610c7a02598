"""End to end on the real binaries: the demo's exchange-trouble scenario, its events through the machine's Redis ->
the exporter's API series -> Prometheus (the project's rules, `for` and windows 60 times shorter) -> Alertmanager
-> the notifier -> the fake Telegram server. HighAPILatency and RateLimitApproaching fire, then resolve."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.stack import Stack
from tests.fakes.telegram import ThreadedFake
from tests.monitoring.test_stack_e2e import REDIS_URL, services, telegram_stack, wait


@pytest.fixture(scope="module")
def trouble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, ThreadedFake]]:
    services()
    yield from telegram_stack(Path(tmp_path_factory.mktemp("trouble")), "exchange-trouble", redis_url=REDIS_URL)


def test_exchange_trouble_fires_and_resolves_the_api_alerts(trouble: tuple[Stack, ThreadedFake]) -> None:
    s, tg = trouble

    def messages(name: str, resolved: bool) -> list[str]:
        return [t for t in tg.texts() if name in t and ("RESOLVED" in t) is resolved]

    for name in ("RateLimitApproaching", "HighAPILatency"):
        wait(lambda name=name: messages(name, resolved=False), 90, f"{name} firing at the fake Telegram")
    firing = messages("HighAPILatency", resolved=False)[0]
    assert "Slow exchange API" in firing and "fetch_ticker" in firing
    assert "calls left before the exchange's rate limit" in messages("RateLimitApproaching", resolved=False)[0]
    prom = f"http://127.0.0.1:{s.ports.prometheus}"
    alerts = httpx.get(f"{prom}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    assert {a["labels"]["bot"] for a in alerts if a["labels"]["alertname"] == "HighAPILatency"} == {
        "grid-btc",
        "dca-eth",
        "hybrid-sol",
    }
    # the exchange recovers: both alerts resolve, and say so
    for name in ("RateLimitApproaching", "HighAPILatency"):
        wait(lambda name=name: messages(name, resolved=True), 120, f"{name} resolved at the fake Telegram")
