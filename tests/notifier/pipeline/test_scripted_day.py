"""A scripted day of Alertmanager webhooks on a frozen, steppable clock: one message per real change, repeats after
the repeat interval, quiet nights with one catch-up in the morning, critical alerts that get through at once."""

from __future__ import annotations

import asyncio
from typing import Any

from notifier.clock import FrozenClock
from notifier.runtime import Runtime
from tests.fakes.telegram import FakeTelegram, check_html
from tests.helpers import TOKEN, am_group, berlin, settings_from, wait_for
from tests.notifier.harness import delivery_rows, post, running


def group(name: str, severity: str, alerts: list[tuple[str, str, float, float | None]]) -> str:
    """alerts: (fingerprint, status, startsAt, endsAt)"""
    return am_group(name, severity, alerts)


def config(tg: FakeTelegram, mode: str = "defer", **route: Any) -> dict[str, Any]:
    return {
        "server": {"auth": {"bearer_token": TOKEN}},
        "delivery": {"poll_interval": "20ms"},
        "receivers": [
            {
                "name": "tg",
                "telegram": [{"bot_token": tg.token, "chat_id": 42, "api_url": tg.url, "silent_severities": []}],
            }
        ],
        "routes": {"receiver": "tg", "quiet_hours": {"schedule": "night", "mode": mode}, **route},
        "quiet_hours": {"night": {"location": "Europe/Berlin", "times": [{"start": "22:00", "end": "07:00"}]}},
    }


async def step(clock: FrozenClock, rt: Runtime, to: float) -> None:
    await clock.set(to)
    rt.worker.wake()
    await asyncio.sleep(0.15)


async def settled(rt: Runtime) -> None:
    async def done() -> bool:
        return all(
            r["state"] in ("sent", "dead") or r["next_attempt_at"] > rt.clock.now() for r in await delivery_rows(rt)
        )

    await wait_for(done, timeout=10)


def texts(tg: FakeTelegram) -> list[str]:
    return [check_html(s.text) for s in tg.sent]


async def test_dedup_repeat_and_resolution_during_the_day(sqlite_url: str, fake_telegram: FakeTelegram) -> None:
    clock = FrozenClock(berlin(26, 12))
    s = settings_from(config(fake_telegram), sqlite_url)
    firing = group("LargeDrawdown", "warning", [("a1", "firing", berlin(26, 11, 55), None)])
    async with running(s, clock=clock) as (client, rt):
        assert (await post(client, firing)).json()["queued"] == 1
        assert (await post(client, firing)).json()["duplicate"] is True  # the HA peer's copy
        await settled(rt)
        assert len(fake_telegram.sent) == 1 and "1 new" in texts(fake_telegram)[0]
        await step(clock, rt, berlin(26, 13))  # Alertmanager's group_interval resend: unchanged
        r = (await post(client, firing)).json()
        assert r["duplicate"] is False and r["queued"] == 0 and r["suppressed"] == {"unchanged": 1}
        await step(clock, rt, berlin(26, 16, 5))  # the notifier's repeat_interval (4h) has passed
        assert (await post(client, firing)).json()["queued"] == 1
        await settled(rt)
        assert len(fake_telegram.sent) == 2 and "1 still firing" in texts(fake_telegram)[1]
        await step(clock, rt, berlin(26, 16, 10))
        resolved = group("LargeDrawdown", "warning", [("a1", "resolved", berlin(26, 11, 55), berlin(26, 16, 9))])
        assert (await post(client, resolved)).json()["queued"] == 1
        await settled(rt)
        last = texts(fake_telegram)[2]
        assert len(fake_telegram.sent) == 3 and "1 resolved" in last and "resolved after 4h 14m" in last
        metrics = (await client.get("/metrics")).text
        assert 'notifier_notifications_suppressed_total{reason="duplicate"} 1.0' in metrics
        assert 'notifier_notifications_suppressed_total{reason="unchanged"} 1.0' in metrics


async def test_repeat_interval_zero_never_repeats(sqlite_url: str, fake_telegram: FakeTelegram) -> None:
    clock = FrozenClock(berlin(26, 12))
    s = settings_from(config(fake_telegram, repeat_interval="0"), sqlite_url)
    firing = group("LargeDrawdown", "warning", [("a1", "firing", berlin(26, 11, 55), None)])
    async with running(s, clock=clock) as (client, rt):
        await post(client, firing)
        await settled(rt)
        await step(clock, rt, berlin(27, 12))
        assert (await post(client, firing)).json()["suppressed"] == {"unchanged": 1}


async def test_quiet_night_defers_to_one_catch_up_and_critical_goes_through(
    sqlite_url: str, fake_telegram: FakeTelegram
) -> None:
    clock = FrozenClock(berlin(26, 23))
    s = settings_from(config(fake_telegram), sqlite_url)
    async with running(s, clock=clock) as (client, rt):
        warn = group("LargeDrawdown", "warning", [("n1", "firing", berlin(26, 22, 58), None)])
        assert (await post(client, warn)).json()["queued"] == 1
        crit = group("CriticalDrawdown", "critical", [("c1", "firing", berlin(26, 22, 59), None)])
        await post(client, crit)
        await settled(rt)
        assert len(fake_telegram.sent) == 1 and "CRITICAL" in texts(fake_telegram)[0]  # at once, despite the night
        await step(clock, rt, berlin(27, 1))
        await post(
            client,
            group(
                "LargeDrawdown",
                "warning",
                [("n1", "firing", berlin(26, 22, 58), None), ("n2", "firing", berlin(27, 1), None)],
            ),
        )
        await step(clock, rt, berlin(27, 3))
        await post(
            client,
            group(
                "LargeDrawdown",
                "warning",
                [("n1", "firing", berlin(26, 22, 58), None), ("n2", "resolved", berlin(27, 1), berlin(27, 3))],
            ),
        )
        await step(clock, rt, berlin(27, 3, 5))  # Alertmanager has dropped n2 from the group by now
        await post(client, group("LargeDrawdown", "warning", [("n1", "firing", berlin(26, 22, 58), None)]))
        await step(clock, rt, berlin(27, 6, 59))
        assert len(fake_telegram.sent) == 1
        waiting = [r for r in await delivery_rows(rt) if r["state"] == "pending"]
        assert len(waiting) == 1  # every change of the night merged into one message
        await step(clock, rt, berlin(27, 7))
        await settled(rt)
        assert len(fake_telegram.sent) == 2
        catch_up = texts(fake_telegram)[1]
        assert "bot-n1" in catch_up and "firing for 8h 2m" in catch_up
        assert "bot-n2" in catch_up and "resolved after 2h" in catch_up  # fired 01:00, resolved 03:00
        assert "2 new" in catch_up and "1 resolved" in catch_up
        await step(clock, rt, berlin(27, 7, 30))
        assert len(fake_telegram.sent) == 2  # once


async def test_a_restart_at_03_00_still_sends_the_07_00_catch_up_once(
    sqlite_url: str, fake_telegram: FakeTelegram
) -> None:
    clock = FrozenClock(berlin(26, 23))
    s = settings_from(config(fake_telegram), sqlite_url)
    async with running(s, clock=clock) as (client, _rt):
        await post(client, group("LargeDrawdown", "warning", [("n1", "firing", berlin(26, 22, 58), None)]))
    await clock.set(berlin(27, 3))
    async with running(s, clock=clock) as (_client, rt):
        await step(clock, rt, berlin(27, 6, 59))
        assert fake_telegram.sent == []
        await step(clock, rt, berlin(27, 7))
        await settled(rt)
        await step(clock, rt, berlin(27, 8))
        assert len(fake_telegram.sent) == 1 and "bot-n1" in texts(fake_telegram)[0]


async def test_silent_mode_sends_without_sound_and_drop_mode_drops(
    sqlite_url: str, tmp_path: Any, fake_telegram: FakeTelegram
) -> None:
    clock = FrozenClock(berlin(26, 23))
    async with running(settings_from(config(fake_telegram, mode="silent"), sqlite_url), clock=clock) as (client, rt):
        await post(client, group("LargeDrawdown", "warning", [("n1", "firing", berlin(26, 22, 58), None)]))
        await settled(rt)
        assert fake_telegram.sent[0].disable_notification is True
    drop_url = f"sqlite:///{tmp_path}/drop.db"
    async with running(settings_from(config(fake_telegram, mode="drop"), drop_url), clock=clock) as (client, rt):
        r = await post(client, group("Other", "warning", [("x1", "firing", berlin(26, 22, 58), None)]))
        assert r.json()["suppressed"] == {"quiet_hours_drop": 1}
        text = (await client.get("/metrics")).text
        assert 'notifier_notifications_suppressed_total{reason="quiet_hours_drop"} 1.0' in text
    assert len(fake_telegram.sent) == 1


async def test_send_resolved_false(sqlite_url: str, fake_telegram: FakeTelegram) -> None:
    clock = FrozenClock(berlin(26, 12))
    cfg = config(fake_telegram)
    cfg["receivers"][0]["send_resolved"] = False
    async with running(settings_from(cfg, sqlite_url), clock=clock) as (client, rt):
        await post(
            client,
            group("G", "warning", [("a", "firing", berlin(26, 11), None), ("b", "firing", berlin(26, 11), None)]),
        )
        await settled(rt)
        await step(clock, rt, berlin(26, 12, 5))
        r = await post(
            client,
            group(
                "G",
                "warning",
                [("a", "firing", berlin(26, 11), None), ("b", "resolved", berlin(26, 11), berlin(26, 12, 4))],
            ),
        )
        assert r.json()["suppressed"] == {"unchanged": 1}  # only a resolution: not wanted
        await step(clock, rt, berlin(26, 12, 10))
        await post(
            client,
            group("G", "warning", [("a", "firing", berlin(26, 11), None), ("c", "firing", berlin(26, 12, 9), None)]),
        )
        await settled(rt)
        assert len(fake_telegram.sent) == 2
        assert "bot-b" not in texts(fake_telegram)[1] and "bot-c" in texts(fake_telegram)[1]


async def test_skip_resolved_says_nothing_for_a_group_that_came_and_went_in_the_night(
    sqlite_url: str, fake_telegram: FakeTelegram
) -> None:
    clock = FrozenClock(berlin(26, 23))
    cfg = config(fake_telegram)
    cfg["routes"]["quiet_hours"]["skip_resolved"] = True
    async with running(settings_from(cfg, sqlite_url), clock=clock) as (client, rt):
        await post(client, group("Blip", "warning", [("b1", "firing", berlin(26, 23), None)]))
        await step(clock, rt, berlin(27, 1))
        await post(client, group("Blip", "warning", [("b1", "resolved", berlin(26, 23), berlin(27, 0, 30))]))
        await post(client, group("Stays", "warning", [("s1", "firing", berlin(27, 1), None)]))
        await step(clock, rt, berlin(27, 7))
        await settled(rt)
        await step(clock, rt, berlin(27, 7, 5))
        names = [t.split("\n")[0] for t in texts(fake_telegram)]
        assert len(names) == 1 and "Stays" in names[0]  # the blip came and went unseen: no catch-up for it
        assert 'reason="quiet_hours_resolved"} 1.0' in (await client.get("/metrics")).text
