"""Escalation through the real path, on both stores: the webhook, the store, the worker, python-telegram-bot against
the strict fake Bot API, and the ntfy and Pushover channels against their strict fakes. The clock is frozen, and the
escalation ticker's pass is run by the test after each step of the clock, so that nothing depends on timing.

A critical group nobody acknowledges reaches step 1's receiver after `after` and step 2's after its own; a resolve
tells both; an Ack before the step stops it, and a new alert in the acknowledged group starts the chain again;
acknowledging the Pushover emergency on the phone acknowledges the group and ends the chain; a group deferred by
quiet hours starts no chain until it is sent; two replicas on PostgreSQL fire each step once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from notifier.clock import FrozenClock
from notifier.runtime import Runtime
from notifier.store.tables import alert_groups, group_acks
from tests.fakes.push import FakeNtfy, FakePushover
from tests.fakes.telegram import FakeTelegram
from tests.helpers import make_group, settings_from, wait_for
from tests.notifier.escalation.chain import (
    TWO_STEPS,
    config,
    counted,
    critical,
    delivered,
    first_message,
    lines,
    press,
    resolved,
    step,
)
from tests.notifier.harness import post, running


async def test_an_unacknowledged_critical_group_escalates_step_by_step_and_its_resolve_tells_everyone(
    store_url: str, fake_telegram: FakeTelegram, ntfy: FakeNtfy, pushover: FakePushover
) -> None:
    tg = fake_telegram
    clock = FrozenClock(time.time())
    settings = settings_from(config(tg, ntfy, pushover, TWO_STEPS), store_url)
    async with running(settings, clock=clock) as (client, rt):
        await first_message(client, rt, tg, clock)
        await step(rt, clock, 29)
        await asyncio.sleep(0.3)
        assert ntfy.published == [] and pushover.pushed == []  # not yet

        await step(rt, clock, 2)
        await wait_for(lambda: len(ntfy.published) == 1)
        push = ntfy.published[0]
        assert push.priority == 5 and "CRITICAL" in push.title and "CriticalDrawdown" in push.title
        assert "⏫ not acknowledged for 31s; escalated from oncall" in push.message
        assert push.actions and push.actions[0]["label"] == "Silence"
        assert pushover.pushed == []

        await step(rt, clock, 60)
        await wait_for(lambda: len(pushover.pushed) == 1)
        emergency = pushover.pushed[0]
        assert emergency.priority == 2 and emergency.receipt is not None  # repeats on the phone until acknowledged
        assert "escalated from oncall" in emergency.message
        await step(rt, clock, 600)
        await asyncio.sleep(0.3)
        assert len(ntfy.published) == 1 and len(pushover.pushed) == 1  # every step fires once

        assert (await post(client, resolved())).status_code == 202
        await wait_for(lambda: len(tg.sent) == 2)
        await step(rt, clock, 1)
        await wait_for(lambda: len(ntfy.published) == 2 and len(pushover.pushed) == 2)
        assert "RESOLVED" in ntfy.published[1].title and ntfy.published[1].priority == 2
        assert "RESOLVED" in pushover.pushed[1].title and pushover.pushed[1].priority == -1
        assert pushover.receipts[emergency.receipt].cancelled  # the phone stops repeating the emergency
        said = await lines(rt)
        assert any(t.startswith("escalated to loud (step 1 of 2): not acknowledged for 31s") for t in said)
        assert any(t.startswith("escalated to backup (step 2 of 2)") for t in said)
        assert said[-1] == "escalation chain ended: resolved; told loud, backup it resolved"
        assert (counted(rt, "started"), counted(rt, "escalated"), counted(rt, "resolved")) == (1, 2, 1)


async def test_a_step_overdue_when_the_group_resolves_never_pages_and_the_timeline_says_so(
    store_url: str, fake_telegram: FakeTelegram, ntfy: FakeNtfy, pushover: FakePushover
) -> None:
    """The ticker made no pass while step 1 came due (the database was away, say), and the group resolved
    meanwhile: nobody is paged about a problem that is over, and the chain's end names the step that never paged."""
    tg = fake_telegram
    clock = FrozenClock(time.time())
    settings = settings_from(config(tg, ntfy, pushover, TWO_STEPS), store_url)
    async with running(settings, clock=clock) as (client, rt):
        due = await first_message(client, rt, tg, clock)
        await clock.advance(45)  # no pass of the ticker
        assert (await post(client, resolved())).status_code == 202
        await wait_for(lambda: len(tg.sent) == 2)
        await step(rt, clock, 1)
        await step(rt, clock, 120)
        await asyncio.sleep(0.3)
        assert ntfy.published == [] and pushover.pushed == []
        at = due.removeprefix("escalation step 1 due at ").split(" ")[0]
        assert (await lines(rt))[-1] == (
            f"escalation chain ended: resolved; step 1 (loud), due at {at}, never paged: the group resolved before "
            "the notifier could fire it"
        )


async def test_an_ack_before_the_step_stops_it_and_a_new_alert_starts_the_chain_again(
    store_url: str, fake_telegram: FakeTelegram, ntfy: FakeNtfy, pushover: FakePushover
) -> None:
    tg = fake_telegram
    clock = FrozenClock(time.time())
    settings = settings_from(config(tg, ntfy, pushover, TWO_STEPS), store_url)
    async with running(settings, clock=clock) as (client, rt):
        assert (await post(client, critical(1))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        await step(rt, clock, 0)
        await press(tg, "Ack")
        await step(rt, clock, 31)
        await step(rt, clock, 120)
        await asyncio.sleep(0.3)
        assert ntfy.published == [] and pushover.pushed == []
        assert (await lines(rt))[-1] == "escalation chain ended: acknowledged by @alice"
        assert counted(rt, "acknowledged") == 1

        # a new alert fires in the acknowledged group: no longer acknowledged, the chain starts again
        await clock.advance(2)
        assert (await post(client, critical(2))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 2)
        await step(rt, clock, 0)
        await step(rt, clock, 31)
        await wait_for(lambda: len(ntfy.published) == 1)
        assert "not acknowledged for 31s" in ntfy.published[0].message


async def test_a_new_firing_taken_into_a_message_that_waited_from_before_starts_the_chain_once_that_is_sent(
    store_url: str, fake_telegram: FakeTelegram, ntfy: FakeNtfy, pushover: FakePushover
) -> None:
    """The group's resolve is still waiting for the provider (in back-off) when it fires again: the new firing is
    taken into that waiting message, made before the chain was armed. The chain starts when it is sent all the
    same, and its step fires (found by the soak: such a chain stayed armed and never paged)."""
    tg = fake_telegram
    clock = FrozenClock(time.time())
    steps = [{"after": "30s", "receivers": ["loud"]}]
    async with running(settings_from(config(tg, ntfy, pushover, steps), store_url), clock=clock) as (client, rt):
        assert (await post(client, critical())).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        await step(rt, clock, 0)
        tg.fail_next(1, 502, "Bad Gateway")
        await clock.advance(5)
        assert (await post(client, resolved())).status_code == 202
        await wait_for(lambda: not tg.failures)  # the resolve failed once: it waits for its next try
        await step(rt, clock, 0)
        await clock.advance(0.05)  # before that try, the group fires again
        refire = make_group(1, severity="critical", name="CriticalDrawdown", group_key='{}:{bot="bot-7"}')
        refire["alerts"][0]["startsAt"] = "2026-11-26T06:00:00Z"
        assert (await post(client, json.dumps(refire))).status_code == 202
        await step(rt, clock, 2)
        await wait_for(lambda: len(tg.sent) == 2)
        assert "RESOLVED" not in tg.sent[1].text  # one message, with the newer state
        await step(rt, clock, 0)
        await step(rt, clock, 31)
        await wait_for(lambda: len(ntfy.published) == 1)
        assert "not acknowledged for 31s" in ntfy.published[0].message


async def test_acknowledging_the_pushover_emergency_on_the_phone_acknowledges_the_group_and_ends_the_chain(
    store_url: str, fake_telegram: FakeTelegram, ntfy: FakeNtfy, pushover: FakePushover
) -> None:
    tg = fake_telegram
    clock = FrozenClock(time.time())
    steps = [{"after": "30s", "receivers": ["backup"]}, {"after": "90s", "receivers": ["loud"]}]
    async with running(settings_from(config(tg, ntfy, pushover, steps), store_url), clock=clock) as (client, rt):
        assert (await post(client, critical())).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        await step(rt, clock, 0)
        await step(rt, clock, 31)
        await wait_for(lambda: len(pushover.pushed) == 1)
        receipt = pushover.pushed[0].receipt
        assert receipt is not None
        assert rt.phone_acks is not None
        assert await rt.phone_acks.run_once() == 0  # not acknowledged yet
        pushover.acknowledge(receipt, by="u" * 30, device="pixel")
        await clock.advance(11)  # the receipt is read again no sooner than every 10 s
        assert await rt.phone_acks.run_once() == 1
        async with rt.store.begin() as conn:
            actor = (await conn.execute(select(group_acks.c.actor))).scalar()
        assert actor == "Pushover uuuuuuuu… (pixel)"
        await step(rt, clock, 1)
        await step(rt, clock, 120)
        await asyncio.sleep(0.3)
        assert ntfy.published == []  # the chain ended: step 2 never fires
        assert (await lines(rt))[-1] == "escalation chain ended: acknowledged by Pushover uuuuuuuu… (pixel)"
        assert any("Acknowledged by Pushover" in t for t in await lines(rt, "action"))
        await wait_for(lambda: "acknowledged by Pushover" in tg.sent[0].text)  # the chat's copy shows it
        assert await rt.phone_acks.run_once() == 0  # an acknowledged group's receipt is not read again


async def test_a_group_deferred_by_quiet_hours_starts_no_chain_until_it_is_sent(
    sqlite_url: str, fake_telegram: FakeTelegram, ntfy: FakeNtfy, pushover: FakePushover
) -> None:
    tg = fake_telegram
    start = time.time()
    clock = FrozenClock(start)
    data = config(tg, ntfy, pushover, TWO_STEPS, quiet_hours={"schedule": "now", "bypass_severities": []})
    hh = time.strftime("%H:%M", time.gmtime(start - 60))
    end = time.strftime("%H:%M", time.gmtime(start + 600))
    data["quiet_hours"] = {"now": {"location": "UTC", "times": [{"start": hh, "end": end}]}}
    async with running(settings_from(data, sqlite_url), clock=clock) as (client, rt):
        assert (await post(client, critical())).status_code == 202
        await step(rt, clock, 0)
        await step(rt, clock, 300)  # deferred: nothing sent, so nothing to escalate
        await asyncio.sleep(0.3)
        assert tg.sent == [] and ntfy.published == []
        assert await lines(rt) == []
        await step(rt, clock, 400)  # the window ended: the group is sent, and the chain starts from then
        await wait_for(lambda: len(tg.sent) == 1)
        await step(rt, clock, 0)
        await step(rt, clock, 31)
        await wait_for(lambda: len(ntfy.published) == 1)


async def test_two_replicas_on_postgresql_fire_each_step_once(
    pg_url: str, fake_telegram: FakeTelegram, ntfy: FakeNtfy, pushover: FakePushover
) -> None:
    tg = fake_telegram
    clock = FrozenClock(time.time())
    settings = settings_from(config(tg, ntfy, pushover, TWO_STEPS), pg_url)
    async with running(settings, clock=clock) as (client, one):
        other = Runtime.build(settings, clock=clock, worker_owner="replica-2")
        await other.start()
        try:
            assert (await post(client, critical())).status_code == 202
            await wait_for(lambda: len(tg.sent) == 1)
            replicas = [one, other]
            for seconds in (0, 31, 0, 60, 0, 1):
                await clock.advance(seconds)
                await wait_for(lambda: delivered(one, clock.now()))
                await asyncio.gather(*(r.escalator.run_once() for r in replicas if r.escalator is not None))
            await wait_for(lambda: len(ntfy.published) == 1 and len(pushover.pushed) == 1)
            await asyncio.sleep(0.5)
            assert len(ntfy.published) == 1 and len(pushover.pushed) == 1
            said = await lines(one)
            assert sum(t.startswith("escalated to loud") for t in said) == 1
            assert sum(t.startswith("escalated to backup") for t in said) == 1
        finally:
            await other.stop()


async def test_a_step_that_respects_quiet_hours_waits_for_their_end_and_one_that_ignores_them_does_not(
    sqlite_url: str, fake_telegram: FakeTelegram, ntfy: FakeNtfy, pushover: FakePushover
) -> None:
    tg = fake_telegram
    start = time.time()
    clock = FrozenClock(start)
    steps = [
        {"after": "30s", "receivers": ["loud"], "quiet_hours": "respect"},
        {"after": "60s", "receivers": ["backup"]},
    ]
    quiet = {"schedule": "now", "mode": "silent", "bypass_severities": []}  # sent at once, without a sound
    data = config(tg, ntfy, pushover, steps, quiet_hours=quiet)
    hh, end = time.strftime("%H:%M", time.gmtime(start - 60)), time.strftime("%H:%M", time.gmtime(start + 600))
    data["quiet_hours"] = {"now": {"location": "UTC", "times": [{"start": hh, "end": end}]}}
    async with running(settings_from(data, sqlite_url), clock=clock) as (client, rt):
        assert (await post(client, critical())).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        await step(rt, clock, 0)
        await step(rt, clock, 31)
        await step(rt, clock, 30)
        await wait_for(lambda: len(pushover.pushed) == 1)  # the step that ignores quiet hours pages at once
        assert ntfy.published == []  # the one that respects them waits for their end
        assert any(f"held by quiet hours until {end}" in t for t in await lines(rt))
        await step(rt, clock, 600)
        await wait_for(lambda: len(ntfy.published) == 1)


async def test_a_peer_copy_flushed_before_an_alert_fired_again_does_not_end_its_chain(
    store_url: str, fake_telegram: FakeTelegram, ntfy: FakeNtfy, pushover: FakePushover
) -> None:
    """Seen in the soak: the group resolved and paged loud with the resolution; one alert fired again; then the
    other peer's copy, flushed before that, told only the other alert's old resolution. Taken as "the group
    resolved", it ended the new chain, and nobody was paged for a group that kept firing."""
    tg = fake_telegram
    clock = FrozenClock(time.time())
    settings = settings_from(config(tg, ntfy, pushover, TWO_STEPS), store_url)
    key = '{}:{bot="bot-7"}'

    def group(*alerts: tuple[int, str, str]) -> str:
        body = make_group(2, severity="critical", name="CriticalDrawdown", group_key=key)
        chosen = []
        for i, starts, ends in alerts:
            a = body["alerts"][i]
            a["startsAt"], a["endsAt"] = starts, ends
            a["status"] = "firing" if ends.startswith("0001") else "resolved"
            chosen.append(a)
        body["alerts"] = chosen
        body["status"] = "firing" if any(a["status"] == "firing" for a in chosen) else "resolved"
        return json.dumps(body)

    never = "0001-01-01T00:00:00Z"
    async with running(settings, clock=clock) as (client, rt):
        assert (
            await post(client, group((0, "2026-11-26T04:00:00Z", never), (1, "2026-11-26T04:00:00Z", never)))
        ).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        ended = (
            (0, "2026-11-26T04:00:00Z", "2026-11-26T04:05:00Z"),
            (1, "2026-11-26T04:00:00Z", "2026-11-26T04:05:00Z"),
        )
        assert (await post(client, group(*ended))).status_code == 202
        await step(rt, clock, 2)  # Telegram's one message a second per chat
        await wait_for(lambda: len(tg.sent) == 2)
        # bot-000 fires again; the other peer's copy, flushed before that, tells only bot-001's resolution
        assert (await post(client, group((0, "2026-11-26T04:07:00Z", never), ended[1]))).status_code == 202
        await step(rt, clock, 2)
        await wait_for(lambda: len(tg.sent) == 3)
        late = await post(client, group(ended[1]))
        assert late.status_code == 202 and late.json()["queued"] == 0
        await step(rt, clock, 1)
        await step(rt, clock, 31)
        await wait_for(lambda: len(ntfy.published) == 1)  # the new chain ran its step
        assert "CriticalDrawdown" in ntfy.published[0].title and "RESOLVED" not in ntfy.published[0].title
        stale = await lines(rt, "webhook")
        assert any(
            t.startswith("stale copy from an Alertmanager peer: it leaves out 1 alert firing since 04:07:00")
            for t in stale
        )
        async with rt.store.begin() as conn:
            firing = (await conn.execute(select(alert_groups.c.firing))).scalar_one()
        assert firing == 1  # /alerts and the web view list it firing


async def test_an_ack_takes_back_a_page_still_waiting_for_the_provider_and_its_resolve_does_not_page(
    store_url: str, fake_telegram: FakeTelegram, ntfy: FakeNtfy, pushover: FakePushover
) -> None:
    """Seen in the soak: a page waited behind ntfy's limit, the person acknowledged the group in the chat, and the
    page still went out after the acknowledgement. Now the acknowledgement takes it back."""
    tg = fake_telegram
    clock = FrozenClock(time.time())
    steps = [{"after": "30s", "receivers": ["loud"]}]
    async with running(settings_from(config(tg, ntfy, pushover, steps), store_url), clock=clock) as (client, rt):
        assert (await post(client, critical())).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        await step(rt, clock, 0)
        ntfy.fail_next(1, 429, retry_after=60)
        await step(rt, clock, 31)  # the step fires; ntfy answers 429: the page waits a minute
        await wait_for(lambda: not ntfy.failures)
        await step(rt, clock, 0)
        await press(tg, "Ack")
        await step(rt, clock, 61)
        await step(rt, clock, 120)
        await asyncio.sleep(0.3)
        assert ntfy.published == []  # the page did not go out after the acknowledgement
        said = await lines(rt)
        assert "page to loud taken back before it went out: acknowledged by @alice" in said
        assert said[-1] == "escalation chain ended: acknowledged by @alice"

        assert (await post(client, resolved())).status_code == 202
        await wait_for(lambda: len(tg.sent) >= 2)
        await step(rt, clock, 2)
        await step(rt, clock, 1)
        await asyncio.sleep(0.3)
        assert ntfy.published == []  # loud never heard of the group: no "resolved" push either
        assert (await lines(rt))[-1] == "escalation chain ended: resolved"


async def test_a_silence_from_the_chat_takes_back_a_waiting_page_too(
    store_url: str,
    fake_telegram: FakeTelegram,
    ntfy: FakeNtfy,
    pushover: FakePushover,
    tmp_path: Path,
    alertmanager: Callable[[Path], str],
) -> None:
    tg = fake_telegram
    clock = FrozenClock(time.time())
    steps = [{"after": "30s", "receivers": ["loud"]}]
    data = config(tg, ntfy, pushover, steps)
    (tmp_path / "am.yml").write_text("route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n")
    data["alertmanager"]["urls"] = [alertmanager(tmp_path / "am.yml")]
    async with running(settings_from(data, store_url), clock=clock) as (client, rt):
        assert (await post(client, critical())).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        await step(rt, clock, 0)
        ntfy.fail_next(1, 503)
        await step(rt, clock, 31)
        await wait_for(lambda: not ntfy.failures)
        await press(tg, "Silence 1h")
        assert tg.callback_answers[0]["text"].startswith("Silenced until")
        await step(rt, clock, 10)
        await step(rt, clock, 60)
        await asyncio.sleep(0.3)
        assert ntfy.published == []
        assert any(
            t.startswith("page to loud taken back before it went out: silenced by @alice until")
            for t in await lines(rt)
        )
