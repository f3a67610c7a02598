"""Email digests: schedules, a known day's exact content, nothing sent for nothing, one digest for a gap of missed
ticks, and exactly one digest per tick when several schedulers race."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from notifier.clock import FrozenClock
from notifier.config import load_settings_from_mapping
from notifier.digest_schedule import DigestSchedule
from notifier.digests import DigestScheduler
from notifier.errors import ConfigError
from tests.fakes.smtp import SMTPServer, mail_text
from tests.helpers import TOKEN, am_group, berlin, settings_from, wait_for
from tests.notifier.harness import post, running


def webhook(name: str, severity: str, fp: str, start: float, end: float | None = None, bot: str = "grid-btc") -> str:
    status = "resolved" if end else "firing"
    return am_group(name, severity, [(fp, status, start, end)], bot=bot, summary=f"{name} summary", generator_url=True)


def config(smtp: SMTPServer, schedule: str = "0 8 * * *", **digest: Any) -> dict[str, Any]:
    return {
        "server": {"auth": {"bearer_token": TOKEN}},
        "delivery": {"poll_interval": "20ms"},
        "receivers": [
            {
                "name": "mail",
                "email": [
                    {
                        "host": "127.0.0.1",
                        "port": smtp.port,
                        "tls": "none",
                        "from": "alerts@example.com",
                        "to": ["desk@example.com"],
                    }
                ],
                "digest": {"schedule": schedule, "timezone": "Europe/Berlin", **digest},
            }
        ],
        "routes": {"receiver": "mail", "digest": True},
    }


def test_schedules() -> None:
    daily = DigestSchedule.parse("0 8 * * *", "Europe/Berlin")
    assert daily.latest_tick(berlin(27, 9, 30)) == berlin(27, 8)
    assert daily.latest_tick(berlin(27, 7, 59)) == berlin(26, 8)
    hourly = DigestSchedule.parse("every 1h", "Europe/Berlin")
    assert hourly.latest_tick(berlin(27, 9, 30)) == berlin(27, 9)
    weekdays = DigestSchedule.parse("30 7 * * 1-5", "Europe/Berlin")  # 2026-11-28 is a Saturday
    assert weekdays.latest_tick(berlin(29, 12)) == berlin(27, 7, 30)
    for bad in ("every 10s", "0 25 * * *", "0 8 * *", "x 8 * * *"):
        with pytest.raises(ValueError):
            DigestSchedule.parse(bad, "UTC")


def test_digest_config_errors() -> None:
    with pytest.raises(ConfigError, match="no email target"):
        load_settings_from_mapping(
            {
                "receivers": [{"name": "a", "log": [{}], "digest": {"schedule": "every 1h"}}],
                "routes": {"receiver": "a"},
            },
            env={},
        )
    with pytest.raises(ConfigError) as info:
        load_settings_from_mapping(
            {
                "receivers": [
                    {
                        "name": "a",
                        "email": [{"host": "h", "from": "a@b.c", "to": ["d@e.f"]}],
                        "digest": {"schedule": "0 99 * * *"},
                    }
                ],
                "routes": {"receiver": "a"},
            },
            env={},
        )
    assert info.value.path == "receivers[0].digest.schedule"


async def test_a_known_days_digest_has_exactly_this_content(sqlite_url: str, smtp: SMTPServer) -> None:
    clock = FrozenClock(berlin(26, 10))
    async with running(settings_from(config(smtp), sqlite_url), clock=clock) as (client, rt):

        async def send(t: float, body: str) -> None:
            await clock.set(t)
            r = await post(client, body)
            assert r.status_code == 202 and r.json()["queued"] == 0  # into the digest, not sent now

        await send(berlin(26, 10), webhook("LargeDrawdown", "warning", "a1", berlin(26, 10)))
        await send(berlin(26, 11), webhook("LargeDrawdown", "warning", "a1", berlin(26, 10), berlin(26, 11)))
        await send(berlin(26, 12), webhook("CriticalDrawdown", "critical", "b1", berlin(26, 12), bot="dca-eth"))
        await send(berlin(26, 13), webhook("HighErrorRate", "warning", "c1", berlin(26, 13)))
        await send(berlin(26, 13, 30), webhook("HighErrorRate", "warning", "c1", berlin(26, 13), berlin(26, 13, 30)))
        await send(berlin(26, 14), webhook("HighErrorRate", "warning", "c1", berlin(26, 14)))
        await send(berlin(26, 14, 30), webhook("HighErrorRate", "warning", "c1", berlin(26, 14), berlin(26, 14, 30)))
        await clock.set(berlin(27, 7, 59))
        assert await rt.digests.run_due() == 0  # not yet 08:00
        await clock.set(berlin(27, 8))
        assert await rt.digests.run_due() == 1
        rt.worker.wake()
        await wait_for(lambda: len(smtp.messages) == 1)
        mail = smtp.messages[0].message
        assert str(mail["Subject"]) == "[DIGEST] 4 alerts · 1 critical · 3 warning (2026-11-27 08:00 Europe/Berlin)"
        assert mail_text(mail, "plain").replace("\r\n", "\n") == (
            "TRADERAGENT alert digest\n"
            "2026-11-26 08:00 – 2026-11-27 08:00 (Europe/Berlin)\n"
            "\n"
            "4 alerts: 1 critical, 3 warning\n"
            "\n"
            "Still firing:\n"
            "  - [critical] CriticalDrawdown · dca-eth since 2026-11-26 12:00 (20h): CriticalDrawdown summary\n"
            "\n"
            "Fired and resolved:\n"
            "  - [warning] LargeDrawdown · grid-btc: 2026-11-26 10:00 – 2026-11-26 11:00 (1h): LargeDrawdown summary\n"
            "  - [warning] HighErrorRate · grid-btc: 2026-11-26 13:00 – 2026-11-26 13:30 (30m): HighErrorRate summary\n"
            "  - [warning] HighErrorRate · grid-btc: 2026-11-26 14:00 – 2026-11-26 14:30 (30m): HighErrorRate summary\n"
            "\n"
            "Flapped most:\n"
            "  - HighErrorRate · grid-btc: 2 times\n"
        )
        html = mail_text(mail, "html")
        assert '<a href="http://prom/b1">CriticalDrawdown · dca-eth</a>' in html
        metrics = (await client.get("/metrics")).text
        assert "notifier_digests_sent_total 1.0" in metrics and "notifier_digest_items 4.0" in metrics
        # the next day: the critical alert resolves; it is the only item, and it appears once more
        await send(
            berlin(27, 9), webhook("CriticalDrawdown", "critical", "b1", berlin(26, 12), berlin(27, 9), bot="dca-eth")
        )
        await clock.set(berlin(28, 8))
        assert await rt.digests.run_due() == 1
        await wait_for(lambda: len(smtp.messages) == 2)
        text = mail_text(smtp.messages[1].message, "plain")
        assert "1 alert: 1 critical" in text and "2026-11-27 08:00 – 2026-11-28 08:00" in text
        # and a day with nothing at all sends nothing
        await clock.set(berlin(29, 8))
        assert await rt.digests.run_due() == 0
        await asyncio.sleep(0.3)
        assert len(smtp.messages) == 2


async def test_three_missed_ticks_make_one_digest(sqlite_url: str, smtp: SMTPServer) -> None:
    clock = FrozenClock(berlin(26, 10, 5))
    async with running(settings_from(config(smtp, schedule="every 1h"), sqlite_url), clock=clock) as (client, rt):
        await rt.digests.stop()  # driven by hand below
        await clock.set(berlin(26, 11))
        assert await rt.digests.run_due() == 0  # nothing collected yet: no email
        await clock.set(berlin(26, 11, 10))
        await post(client, webhook("LargeDrawdown", "warning", "a1", berlin(26, 11, 10)))
        await clock.set(berlin(26, 14, 20))  # the notifier was down for the 12:00, 13:00 and 14:00 ticks
        assert await rt.digests.run_due() == 1
        assert await rt.digests.run_due() == 0
        rt.worker.wake()
        await wait_for(lambda: len(smtp.messages) == 1)
        text = mail_text(smtp.messages[0].message, "plain")
        assert "2026-11-26 11:00 – 2026-11-26 14:00" in text


async def test_exactly_one_digest_per_tick_with_several_schedulers(sqlite_url: str, smtp: SMTPServer) -> None:
    clock = FrozenClock(berlin(26, 10))
    s = settings_from(config(smtp, schedule="every 1h"), sqlite_url)
    async with running(s, clock=clock) as (client, rt):
        await rt.digests.stop()
        await post(client, webhook("LargeDrawdown", "warning", "a1", berlin(26, 10)))
        await clock.set(berlin(26, 11))
        targets = {"mail": [("mail/email/0", "email")]}
        others = [DigestScheduler(rt.store, s, clock, rt.metrics, rt.worker.wake, targets) for _ in range(3)]
        results = await asyncio.gather(rt.digests.run_due(), *(o.run_due() for o in others))
        assert sum(results) == 1
        rt.worker.wake()
        await wait_for(lambda: len(smtp.messages) == 1)
        await asyncio.sleep(0.3)
        assert len(smtp.messages) == 1
