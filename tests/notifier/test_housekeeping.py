"""Housekeeping: after storage.retention, what was sent, went dead or resolved is deleted; what still waits or still
fires is kept, so pruning never loses a message and never re-announces an old alert."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from notifier.clock import FrozenClock
from notifier.errors import ConfigError
from notifier.store.tables import deliveries, group_state, intake_keys, notifications, rate_slots, threads
from tests.fakes.telegram import FakeTelegram
from tests.helpers import TOKEN, am_group, berlin, settings_from, wait_for
from tests.notifier.harness import count, delivery_rows, post, running

DAY = 86400.0
T0 = berlin(10, 12)


def config(tg: FakeTelegram) -> dict[str, Any]:
    bot = {"bot_token": tg.token, "api_url": tg.url, "silent_severities": []}
    return {
        "server": {"auth": {"bearer_token": TOKEN}},
        "storage": {"retention": "30d"},
        "receivers": [
            {"name": "ok", "telegram": [{**bot, "chat_id": 42}]},
            {"name": "gone", "telegram": [{**bot, "chat_id": -100999}]},  # chat not found: dead
        ],
        "routes": {
            "receiver": "ok",
            "repeat_interval": "0",  # never repeat: an unchanged group stays quiet however long it fires
            "routes": [{"matchers": ['alertname="Lost"'], "receivers": ["gone"]}],
        },
    }


def body(name: str, status: str, at: float) -> str:
    return am_group(name, "warning", [(f"{name}-1", status, T0, at if status == "resolved" else None)])


async def rows(rt: Any, table: Any, *cols: Any) -> set[tuple[Any, ...]]:
    async with rt.store.begin() as conn:
        return {tuple(r) for r in (await conn.execute(select(*cols))).all()}


async def test_old_history_goes_while_waiting_messages_and_firing_groups_stay(
    store_url: str, fake_telegram: FakeTelegram
) -> None:
    clock = FrozenClock(T0)
    s = settings_from(config(fake_telegram), store_url)
    async with running(s, clock=clock) as (client, rt):
        # day 0: a group that keeps firing, one that resolves, one whose chat is gone
        async def settled() -> bool:
            await clock.advance(2)  # the frozen clock moves on, so that Telegram's 1/s per chat lets the next go
            return all(r["state"] in ("sent", "dead") for r in await delivery_rows(rt))

        await post(client, body("StillFiring", "firing", T0))
        await post(client, body("Over", "firing", T0))
        await post(client, body("Lost", "firing", T0))
        await wait_for(settled, timeout=10, interval=0.1)
        await post(client, body("Over", "resolved", clock.now()))
        await wait_for(settled, timeout=10, interval=0.1)
        assert len(fake_telegram.sent) == 3

    # a second process with its worker stopped, so that a message stays waiting, as one held by quiet hours would
    async with running(s, clock=clock, worker_owner="second") as (client, rt):
        await rt.worker.stop()
        await clock.advance(3600)
        waiting = (await post(client, body("Waiting", "firing", clock.now()))).json()["notification_id"]
        await clock.set(T0 + 31 * DAY)
        fresh = (await post(client, body("Fresh", "firing", clock.now()))).json()["notification_id"]
        async with rt.store.begin() as conn:
            await conn.execute(rate_slots.insert(), [{"key": "old", "at": T0}, {"key": "new", "at": clock.now() - 5}])
        assert await count(rt, deliveries) == 6 and await count(rt, threads) == 1  # "Over" closed its own

        deleted = await rt.housekeeper.prune()

        assert deleted["deliveries"] == 4  # the two sent firings, the resolved, the dead one
        assert {r["notification_id"] for r in await delivery_rows(rt)} == {waiting, fresh}
        assert await rows(rt, notifications, notifications.c.id) == {(waiting,), (fresh,)}
        # the others expired (SQLite keeps the keys in memory: the table is PostgreSQL's)
        held = set() if rt.store.is_sqlite else {(fresh,)}
        assert await rows(rt, intake_keys, intake_keys.c.notification_id) == held
        # "StillFiring" still fires: its resolved message will still reply to its first one, a month later
        assert await rows(rt, threads, threads.c.target) == {("ok/telegram/0",)}
        assert await rows(rt, rate_slots, rate_slots.c.key) == {("new",)}
        states = {k.split('"')[1] for (k,) in await rows(rt, group_state, group_state.c.group_key)}
        assert states == {"StillFiring", "Lost", "Waiting", "Fresh"}  # "Over" resolved: forgotten

        # the group that never stopped firing is not announced again: its state survived
        again = (await post(client, body("StillFiring", "firing", clock.now()))).json()
        assert again["duplicate"] is False and again["queued"] == 0 and again["suppressed"] == {"unchanged": 1}
        # and a second run finds nothing more to do
        assert not any((await rt.housekeeper.prune()).values())
        metrics = (await client.get("/metrics")).text
        assert 'notifier_store_pruned_rows_total{table="deliveries"} 4.0' in metrics
        assert 'notifier_store_pruned_rows_total{table="notifications"} 4.0' in metrics


async def test_retention_zero_keeps_everything(sqlite_url: str, fake_telegram: FakeTelegram) -> None:
    clock = FrozenClock(T0)
    cfg = config(fake_telegram)
    cfg["storage"]["retention"] = "0"
    async with running(settings_from(cfg, sqlite_url), clock=clock) as (client, rt):
        await post(client, body("Over", "firing", T0))
        await wait_for(lambda: len(fake_telegram.sent) == 1, timeout=10)
        await clock.set(T0 + 400 * DAY)
        assert await rt.housekeeper.prune() == {}
        assert await count(rt, notifications) == 1 and await count(rt, deliveries) == 1


def test_a_retention_shorter_than_a_day_is_refused(fake_telegram: FakeTelegram) -> None:
    cfg = config(fake_telegram)
    cfg["storage"]["retention"] = "2h"
    with pytest.raises(ConfigError, match=r"storage\.retention: expected 0 \(keep everything\) or at least 1d"):
        settings_from(cfg, "sqlite:///x.db")
