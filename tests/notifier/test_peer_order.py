"""Stale copies from an Alertmanager peer, through the real path (webhook, store, worker, fake Telegram) on both
stores: a resolved group stays resolved whatever order the peers' copies arrive in.

The payloads are Alertmanager 0.25's own (tests/fixtures): 01 both alerts firing, 03 dca-eth resolved at 04:05:17
and grid-btc still firing, 04 both resolved at 04:05:25. The peers' copies of one state are the same bytes; what a
cluster adds is the order: a peer that flushed 03 waits its turn (position x peer_timeout) while the other peer
sends 04, so 03 can arrive after 04, and then that peer's own 04 arrives as a copy of the first.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select

from notifier.store.tables import alert_groups
from notifier.ui.auth import hash_password
from tests.fakes.telegram import FakeTelegram, check_html
from tests.helpers import TOKEN, fixture_bytes, fixture_json, settings_from, wait_for
from tests.notifier.harness import AUTH, delivery_rows, post, running

CHAT = -1001234567890
FIRING, PARTLY, RESOLVED = (
    "01-critical-firing-two-alerts.json",
    "03-critical-one-resolved-one-firing.json",
    "04-critical-all-resolved.json",
)


def config(tg: FakeTelegram) -> dict[str, Any]:
    return {
        "server": {"auth": {"bearer_token": TOKEN}},
        "delivery": {"poll_interval": "50ms", "backoff_initial": "100ms"},
        "receivers": [{"name": "tg", "telegram": [{"bot_token": tg.token, "chat_id": CHAT, "api_url": tg.url}]}],
        "routes": {"receiver": "tg"},
        "ui": {"users": [{"name": "oncall", "password_hash": hash_password("pw")}]},  # alert groups are kept
    }


def group_id() -> str:
    g = fixture_json(FIRING)
    return hashlib.sha256(f"{g['receiver']}\x00{g['groupKey']}".encode()).hexdigest()


def headlines(tg: FakeTelegram) -> list[str]:
    return [check_html(s.text).split("\n")[0] for s in tg.sent]


async def settled(rt: Any) -> bool:
    rows = await delivery_rows(rt)
    return bool(rows) and all(r["state"] in ("sent", "dead") for r in rows)


async def test_a_late_copy_of_an_older_state_does_not_bring_a_resolved_group_back(
    store_url: str, fake_telegram: FakeTelegram
) -> None:
    tg = fake_telegram
    async with running(settings_from(config(tg), store_url)) as (client, rt):
        assert (await post(client, fixture_bytes(FIRING))).json()["queued"] == 1
        await wait_for(lambda: len(tg.sent) == 1)
        assert (await post(client, fixture_bytes(RESOLVED))).json()["queued"] == 1  # peer 2: resolved
        late = (await post(client, fixture_bytes(PARTLY))).json()  # peer 1's copy of what it flushed before
        assert late["duplicate"] is False and late["queued"] == 0
        assert (await post(client, fixture_bytes(RESOLVED))).json()["duplicate"] is True  # peer 1: resolved
        await wait_for(lambda: settled(rt), timeout=15)
        assert headlines(tg) == ["🔴 CRITICAL: CriticalDrawdown", "✅ RESOLVED: CriticalDrawdown"]

        r = await client.get(f"/api/v1/groups/{group_id()}/timeline", headers=AUTH)
        stale = [e for e in r.json()["events"] if e["outcome"] == "stale"]
        assert len(stale) == 1
        assert stale[0]["text"] == (
            "stale copy from an Alertmanager peer: CriticalDrawdown bot=grid-btc resolved at 04:05:25 already known "
            "(the older state is ignored)"
        )
        async with rt.store.begin(readonly=True) as conn:
            firing = (await conn.execute(select(alert_groups.c.firing))).scalar_one()
        assert firing == 0  # /alerts and the web view list it as resolved
        metrics = (await client.get("/metrics")).text
        assert "notifier_stale_alerts_total 1.0" in metrics


async def test_the_stale_copy_while_the_resolution_waits_behind_the_firing_message(
    store_url: str, fake_telegram: FakeTelegram
) -> None:
    """As seen in the chaos run: the resolution waits behind the firing message on the wire; the late copy came
    in then and was coalesced into the waiting message as "1 new", so the chat ended on CRITICAL."""
    tg = fake_telegram
    tg.delay = 1.0
    async with running(settings_from(config(tg), store_url)) as (client, rt):
        await post(client, fixture_bytes(FIRING))
        await wait_for(lambda: any(r["method"] == "sendMessage" for r in tg.requests))
        await post(client, fixture_bytes(RESOLVED))
        await post(client, fixture_bytes(PARTLY))
        await post(client, fixture_bytes(RESOLVED))
        await wait_for(lambda: settled(rt), timeout=15)
        assert headlines(tg) == ["🔴 CRITICAL: CriticalDrawdown", "✅ RESOLVED: CriticalDrawdown"]
        last = check_html(tg.sent[-1].text)
        assert "firing" not in last.lower().replace("firing for", "")


async def test_the_states_in_their_own_order_are_each_told(store_url: str, fake_telegram: FakeTelegram) -> None:
    tg = fake_telegram
    async with running(settings_from(config(tg), store_url)) as (client, rt):
        for name in (FIRING, PARTLY, RESOLVED):
            await post(client, fixture_bytes(name))
            await wait_for(lambda: settled(rt), timeout=15)
        assert headlines(tg) == [
            "🔴 CRITICAL: CriticalDrawdown",
            "🔴 CRITICAL: CriticalDrawdown",
            "✅ RESOLVED: CriticalDrawdown",
        ]
        assert "1 resolved" in check_html(tg.sent[1].text)


async def test_a_copy_that_would_change_the_groups_state_is_not_dropped_as_a_duplicate(
    store_url: str, fake_telegram: FakeTelegram
) -> None:
    """Both alerts fire; one leaves the notifications (a silence in Alertmanager); it comes back with the same
    start: the same bytes as the first notification, within the redelivery window. It is the group's state now,
    not a copy of nothing new."""
    tg = fake_telegram
    both = fixture_json(FIRING)
    one = {**both, "alerts": both["alerts"][1:]}
    async with running(settings_from(config(tg), store_url)) as (client, rt):
        await post(client, json.dumps(both))
        await post(client, json.dumps(one))
        again = (await post(client, json.dumps(both))).json()
        assert again["duplicate"] is False
        copy = (await post(client, json.dumps(both))).json()
        assert copy["duplicate"] is True  # a copy of the state it is in now is a duplicate again
        async with rt.store.begin(readonly=True) as conn:
            firing = (await conn.execute(select(alert_groups.c.firing))).scalar_one()
        assert firing == 2
