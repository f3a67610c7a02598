"""The pipeline's own watchdog: Prometheus' always-firing Watchdog, through Alertmanager to the notifier, proves the
path works. When it stops, the receivers are told directly, once; when it is back, once more; the Watchdog itself is
never sent as an alert. In process with a frozen clock (both stores, and two replicas on PostgreSQL), and through a
real Alertmanager 0.25 posting to a `notifier serve` process."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifier.clock import FrozenClock
from notifier.runtime import Runtime
from notifier.ui.auth import hash_password
from tests.fakes.telegram import FakeTelegram, ThreadedFake
from tests.helpers import TOKEN, iso_z, make_group, settings_from, wait_for
from tests.notifier.harness import post, running
from tests.notifier.test_crash import Notifier

PASSWORD = "correct horse battery"
HASH = hash_password(PASSWORD)


def config(tg: FakeTelegram, every: str = "5m") -> dict[str, Any]:
    return {
        "server": {"auth": {"bearer_token": TOKEN}},
        "receivers": [{"name": "oncall", "telegram": [{"bot_token": tg.token, "chat_id": 42, "api_url": tg.url}]}],
        "routes": {"receiver": "oncall"},
        "watchdog": {"expect_every": every, "receivers": ["oncall"]},
        "ui": {"users": [{"name": "oncall", "password_hash": HASH}]},
    }


def watchdog(replica: str, status: str = "firing") -> str:
    body = make_group(1, status=status, severity="none", name="Watchdog", group_key='{}:{alertname="Watchdog"}')
    body["alerts"][0]["labels"] = {"alertname": "Watchdog", "severity": "none", "prometheus": replica}
    body["commonLabels"] = body["groupLabels"] = {"alertname": "Watchdog"}
    return json.dumps(body)


async def check(rt: Runtime, clock: FrozenClock, seconds: float) -> int:
    await clock.advance(seconds)
    assert rt.watchdog is not None
    return await rt.watchdog.run_once()


async def test_a_silent_watchdog_is_told_once_and_its_return_once(store_url: str, fake_telegram: FakeTelegram) -> None:
    tg = fake_telegram
    start = time.time()
    clock = FrozenClock(start)
    async with running(settings_from(config(tg), store_url), clock=clock) as (client, rt):
        for _ in range(3):  # every minute, as Alertmanager repeats it
            assert (await post(client, watchdog("prometheus-1"))).status_code == 202
            assert await check(rt, clock, 60) == 0
        await asyncio.sleep(0.3)
        assert tg.sent == []  # the Watchdog itself is never an alert

        assert await check(rt, clock, 250) == 1  # 310 s since the last one: more than 5 minutes
        await wait_for(lambda: len(tg.sent) == 1)
        since = time.strftime("%H:%M", time.gmtime(start + 120))
        text = tg.sent[0].text
        assert f"No Watchdog from prometheus-1 since {since} (5m)" in text
        assert "Prometheus or Alertmanager is down, alerts are not reaching you" in text
        assert rt.registry.get_sample_value("notifier_watchdog_missing", {"source": "prometheus-1"}) == 1
        assert (await client.post("/ui/login", data={"user": "oncall", "password": PASSWORD})).status_code == 303
        assert '<b class="critical">prometheus-1: missing since' in (await client.get("/ui")).text
        assert await check(rt, clock, 600) == 0  # told once

        assert (await post(client, watchdog("prometheus-1"))).status_code == 202
        assert await check(rt, clock, 1) == 1
        await wait_for(lambda: len(tg.sent) == 2)
        back = time.strftime("%H:%M", time.gmtime(start + 1030))
        assert f"Watchdog from prometheus-1 back since {back}, silent for 15m" in tg.sent[1].text
        assert "resolved after 15m" in tg.sent[1].text
        assert rt.registry.get_sample_value("notifier_watchdog_missing", {"source": "prometheus-1"}) == 0
        assert await check(rt, clock, 60) == 0
        await asyncio.sleep(0.3)
        assert len(tg.sent) == 2


async def test_each_source_is_watched_on_its_own_and_two_replicas_tell_once(
    pg_url: str, fake_telegram: FakeTelegram
) -> None:
    tg = fake_telegram
    clock = FrozenClock(time.time())
    settings = settings_from(config(tg), pg_url)
    async with running(settings, clock=clock) as (client, one):
        other = Runtime.build(settings, clock=clock, worker_owner="replica-2")
        await other.start()
        try:
            assert (await post(client, watchdog("prometheus-1"))).status_code == 202
            assert (await post(client, watchdog("prometheus-2"))).status_code == 202
            await clock.advance(200)
            assert (await post(client, watchdog("prometheus-2"))).status_code == 202  # only the second keeps coming
            await clock.advance(150)
            changed = await asyncio.gather(*(r.watchdog.run_once() for r in (one, other) if r.watchdog))
            assert sum(changed) == 1
            await wait_for(lambda: len(tg.sent) == 1)
            assert "No Watchdog from prometheus-1" in tg.sent[0].text
            await asyncio.sleep(0.5)
            assert len(tg.sent) == 1
        finally:
            await other.stop()


@pytest.fixture
def telegram() -> Iterator[ThreadedFake]:
    fake = ThreadedFake(FakeTelegram())
    yield fake
    fake.stop()


def test_the_watchdog_of_a_real_alertmanager_stops_and_comes_back(
    sqlite_url: str, telegram: ThreadedFake, tmp_path: Path, alertmanager: Callable[[Path], str]
) -> None:
    tg = telegram.fake
    data = config(tg, every="10s") | {"storage": {"url": sqlite_url}, "delivery": {"poll_interval": "100ms"}}
    n = Notifier(tmp_path, data).start()
    try:
        am_config = tmp_path / "am.yml"
        am_config.write_text(
            "route:\n  receiver: notifier\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n"
            "  repeat_interval: 2s\nreceivers:\n  - name: notifier\n    webhook_configs:\n"
            f"      - url: {n.url}/webhook/alertmanager\n        send_resolved: true\n"
            f"        http_config: {{authorization: {{credentials: {TOKEN}}}}}\n"
        )
        am = alertmanager(am_config)

        def fire(for_seconds: float) -> None:
            alert = {
                "labels": {"alertname": "Watchdog", "severity": "none", "prometheus": "prom-a"},
                "startsAt": iso_z(time.time() - 1),
                "endsAt": iso_z(time.time() + for_seconds),
            }
            assert httpx.post(f"{am}/api/v2/alerts", json=[alert], timeout=5).status_code == 200

        fire(6)  # Prometheus evaluates the Watchdog, then stops (its alert ends after 6 s)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not tg.sent:
            time.sleep(0.2)
        assert len(tg.sent) == 1, n.tail()
        assert "No Watchdog from prom-a since" in tg.sent[0].text
        fire(60)  # back
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(tg.sent) < 2:
            time.sleep(0.2)
        assert len(tg.sent) == 2, n.tail()
        assert "Watchdog from prom-a back since" in tg.sent[1].text
        time.sleep(3)
        assert len(tg.sent) == 2  # one message per change, never the Watchdog itself
    finally:
        n.stop()
