"""Acting from the chat, end to end: a real Alertmanager 0.25, the notifier's real path (webhook, store, worker,
python-telegram-bot and slack-sdk over HTTP) and the strict fakes of Telegram's Bot API and Slack.

Silence from Telegram (Alertmanager has it, suppresses the group's alerts, every copy shows it, Unsilence ends it);
acknowledge from Slack (the Telegram copy is edited, no repeat, a new alert sends again, a resolve clears it);
refusals (a person not allowed, a forged or stale Slack signature, a wrong Telegram secret token, an expired
button) change nothing; a double press makes one silence; Alertmanager down is told."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec
import pytest
from sqlalchemy import select

from notifier.clock import FrozenClock
from notifier.matchers import parse_group_key
from notifier.silences import group_matchers
from notifier.store.tables import action_log, deliveries, group_acks
from tests.fakes.slack import FakeSlack, signed
from tests.fakes.telegram import FakeTelegram, check_html
from tests.helpers import free_port, iso_z, make_group, settings_from, wait_for
from tests.notifier.actions.chat import (
    SIGNING,
    amtool_silences,
    callback_buttons,
    config,
    slack_buttons,
    slack_press,
)
from tests.notifier.harness import post, running


async def test_a_silence_a_person_made_in_alertmanager_for_the_same_group_is_left_alone(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack, am_url: str
) -> None:
    """The notifier replaces a silence of its own it never recorded; one a person made with the very same matchers
    is not its own: it stays as it was, and the press makes the notifier's."""
    tg, slack = fake_telegram, fake_slack
    group = make_group(1, severity="critical", name="BotDown")
    now = time.time()
    theirs = {
        "matchers": [msgspec.to_builtins(m) for m in group_matchers(parse_group_key(group["groupKey"]))],
        "startsAt": iso_z(now - 60),
        "endsAt": iso_z(now + 7200),
        "createdBy": "ops",
        "comment": "maintenance of bot-000",
    }
    async with httpx.AsyncClient() as http:
        sid = (await http.post(f"{am_url}/api/v2/silences", json=theirs, timeout=5)).json()["silenceID"]
    async with running(settings_from(config(tg, slack, [am_url]), sqlite_url)) as (client, _rt):
        assert (await post(client, json.dumps(group))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        tg.press(tg.sent[0], callback_buttons(tg.sent[0])["Silence 1h"])
        await wait_for(lambda: len(tg.callback_answers) == 1, timeout=15)
        assert tg.callback_answers[0]["text"].startswith("Silenced until ")
    in_force = {s["id"]: s for s in amtool_silences(am_url) if s["status"]["state"] == "active"}
    assert len(in_force) == 2 and in_force[sid]["comment"] == "maintenance of bot-000"
    assert abs(_ts(in_force[sid]["endsAt"]) - (now + 7200)) < 2


async def test_silence_from_telegram_reaches_alertmanager_and_every_copy_then_unsilence_ends_it(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack, am_url: str
) -> None:
    tg, slack = fake_telegram, fake_slack
    async with running(settings_from(config(tg, slack, [am_url]), sqlite_url)) as (client, rt):
        group = make_group(2, severity="critical", name="BotDown")
        assert (await post(client, json.dumps(group))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1 and len(slack.posted) == 1)
        buttons = callback_buttons(tg.sent[0])
        assert list(buttons) == ["Ack", "Silence 1h", "Silence 4h", "Silence 24h"]
        assert all(len(data.encode()) <= 64 for data in buttons.values())
        assert list(slack_buttons(slack.posted[0].blocks)) == list(buttons)

        tg.press(tg.sent[0], buttons["Silence 4h"])
        tg.press(tg.sent[0], buttons["Silence 4h"])  # pressed twice: one silence
        await wait_for(lambda: len(tg.callback_answers) == 2, timeout=15)
        texts = sorted(a["text"] for a in tg.callback_answers)
        assert (texts[1].startswith("Silenced until ") and "Silenced already" in texts[0]) or "silencing" in texts[0]
        silences = amtool_silences(am_url)
        assert len(silences) == 1
        s = silences[0]
        assert s["createdBy"] == "@alice via Telegram"
        assert {(m["name"], m["value"], m["isEqual"]) for m in s["matchers"]} == {
            ("alertname", "BotDown", True),
            ("severity", "critical", True),
        }
        assert abs(_ts(s["endsAt"]) - _ts(s["startsAt"]) - 4 * 3600) < 5
        assert "BotDown" in s["comment"]

        # Alertmanager now holds back the group's alerts: it would not send them to the notifier
        labels = {"alertname": "BotDown", "severity": "critical", "bot": "bot-000"}
        async with httpx.AsyncClient() as am:
            assert (await am.post(f"{am_url}/api/v2/alerts", json=[{"labels": labels}])).status_code == 200
            state = (await am.get(f"{am_url}/api/v2/alerts")).json()[0]["status"]
        assert state["state"] == "suppressed" and state["silencedBy"] == [s["id"]]

        # every copy shows it, with a link to the silence; the buttons now offer Unsilence
        await wait_for(lambda: len(tg.edits) >= 1 and len(slack.updates) >= 1)
        edited = check_html(tg.sent[0].text)
        assert "🔕 silenced until" in edited and "by @alice" in edited
        assert f'href="http://am.example/#/silences/{s["id"]}"' in tg.sent[0].text
        assert "🔕 silenced until" in json.dumps(slack.updates[-1]["blocks"], ensure_ascii=False)
        assert list(callback_buttons(tg.sent[0])) == ["Ack", "Unsilence"]

        tg.press(tg.sent[0], callback_buttons(tg.sent[0])["Unsilence"])
        await wait_for(lambda: len(tg.callback_answers) == 3, timeout=15)
        assert tg.callback_answers[-1]["text"] == "Silence expired."
        assert amtool_silences(am_url) == []
        await wait_for(lambda: "silenced" not in check_html(tg.sent[0].text))
        assert list(callback_buttons(tg.sent[0])) == ["Ack", "Silence 1h", "Silence 4h", "Silence 24h"]
        async with rt.store.begin() as conn:
            log = [(r.action, r.outcome) for r in await conn.execute(select(action_log).order_by(action_log.c.at))]
        assert sorted(log) == sorted([("silence", "done"), ("silence", "unchanged"), ("unsilence", "done")])
        sample = rt.metrics.registry.get_sample_value(
            "notifier_chat_actions_total", {"channel": "telegram", "action": "silence", "outcome": "done"}
        )
        assert sample == 1


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def test_ack_from_slack_edits_telegram_stops_repeats_until_a_new_alert_and_a_resolve_clears_it(
    store_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack, am_url: str
) -> None:
    tg, slack = fake_telegram, fake_slack
    clock = FrozenClock(time.time())
    async with running(settings_from(config(tg, slack, [am_url]), store_url), clock=clock) as (client, rt):
        group = make_group(1, severity="warning", name="HighLatency")
        assert (await post(client, json.dumps(group))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1 and len(slack.posted) == 1)
        ack = slack_buttons(slack.posted[0].blocks)["Ack"]
        body = slack_press(slack, ack)
        r = await client.post("/slack/actions", content=body, headers=signed(SIGNING, body))
        assert r.status_code == 200
        await wait_for(lambda: len(slack.responses) == 1)
        assert slack.responses[0]["text"] == "Acknowledged by alice."
        await clock.advance(2)  # past the chats' rate limits (one message a second)
        await wait_for(lambda: len(tg.edits) == 1 and len(slack.updates) == 1)
        assert "✅ acknowledged by alice at " in check_html(tg.sent[0].text)
        assert list(callback_buttons(tg.sent[0])) == ["Unack", "Silence 1h", "Silence 4h", "Silence 24h"]

        # Alertmanager repeats the unchanged group after its repeat_interval: not sent while acknowledged
        await clock.advance(3700)
        assert (await post(client, json.dumps(group))).json()["suppressed"] == {"acknowledged": 2}
        # a new alert in the group: sent again, and the acknowledgement is over
        grown = make_group(2, severity="warning", name="HighLatency")
        assert (await post(client, json.dumps(grown))).json()["queued"] == 2
        await clock.advance(2)
        await wait_for(lambda: len(tg.sent) == 2)
        assert "acknowledged" not in check_html(tg.sent[1].text)
        assert "Ack" in callback_buttons(tg.sent[1])

        # acknowledged again, then resolved: the acknowledgement is cleared
        body = slack_press(slack, ack)
        await client.post("/slack/actions", content=body, headers=signed(SIGNING, body))
        await wait_for(lambda: len(slack.responses) == 2)
        async with rt.store.begin() as conn:
            assert len((await conn.execute(select(group_acks))).all()) == 1
        resolved = make_group(2, severity="warning", name="HighLatency", status="resolved")
        assert (await post(client, json.dumps(resolved))).status_code == 202
        async with rt.store.begin() as conn:
            assert (await conn.execute(select(group_acks))).all() == []


async def test_refusals_change_nothing(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack, am_url: str
) -> None:
    tg, slack = fake_telegram, fake_slack
    async with running(settings_from(config(tg, slack, [am_url]), sqlite_url)) as (client, rt):
        assert (await post(client, json.dumps(make_group(1, name="Refused")))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1 and len(slack.posted) == 1)
        buttons = callback_buttons(tg.sent[0])

        tg.press(tg.sent[0], buttons["Silence 1h"], user_id=666, username="mallory")  # not allowed
        tg.press(tg.sent[0], "na2-0000000000000000000000")  # an unknown button
        await wait_for(lambda: len(tg.callback_answers) == 2, timeout=15)
        answers = {a["text"]: a["show_alert"] for a in tg.callback_answers}
        assert answers == {
            "You may not act on this alert group (your Telegram user id is 666).": True,
            "This button has expired.": False,
        }

        ack = slack_buttons(slack.posted[0].blocks)["Ack"]
        body = slack_press(slack, ack)
        forged = await client.post("/slack/actions", content=body, headers=signed("not-the-secret", body))
        stale = await client.post("/slack/actions", content=body, headers=signed(SIGNING, body, int(time.time()) - 400))
        other_user = slack_press(slack, ack, user="U0MALLORY", name="mallory")
        allowed_sig = await client.post("/slack/actions", content=other_user, headers=signed(SIGNING, other_user))
        assert (forged.status_code, stale.status_code, allowed_sig.status_code) == (401, 401, 200)
        await wait_for(lambda: len(slack.responses) == 1)
        assert slack.responses[0]["text"] == "You may not act on this alert group (your Slack user id is U0MALLORY)."
        # Telegram's webhook is not how this notifier takes updates: refused too
        r = await client.post("/telegram/updates", json={"update_id": 1})
        assert r.status_code == 404

        assert amtool_silences(am_url) == []
        async with rt.store.begin() as conn:
            assert (await conn.execute(select(group_acks))).all() == []
        assert tg.edits == [] and slack.updates == []


async def test_alertmanager_down_is_told_and_a_press_again_retries(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack
) -> None:
    tg, slack = fake_telegram, fake_slack
    down = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    async with running(settings_from(config(tg, slack, down), sqlite_url)) as (client, _rt):
        assert (await post(client, json.dumps(make_group(1, name="NoAM")))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        silence = callback_buttons(tg.sent[0])["Silence 1h"]
        tg.press(tg.sent[0], silence)
        await wait_for(lambda: len(tg.callback_answers) == 1, timeout=15)
        tg.press(tg.sent[0], silence)
        await wait_for(lambda: len(tg.callback_answers) == 2, timeout=15)
        for answer in tg.callback_answers:
            assert answer["text"].startswith("Could not create the silence: no Alertmanager answered: ")
            assert answer["show_alert"]
        assert tg.edits == []


async def test_telegram_webhook_mode_checks_the_secret_token(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack, am_url: str
) -> None:
    tg, slack = fake_telegram, fake_slack
    hook = {
        "mode": "webhook",
        "webhook_url": "https://notifier.example/telegram/updates",
        "secret_token": "s3cr3t_T0k_0123456789",
    }
    settings = settings_from(config(tg, slack, [am_url], telegram=hook), sqlite_url)
    async with running(settings) as (client, rt):
        await wait_for(lambda: tg.webhook is not None and bool(tg.commands))
        assert tg.webhook is not None and tg.webhook["secret_token"] == "s3cr3t_T0k_0123456789"
        assert [c["command"] for c in tg.commands[0]["commands"]] == ["alerts", "silences", "status", "why", "help"]
        assert (await post(client, json.dumps(make_group(1, name="Hooked")))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        data = callback_buttons(tg.sent[0])["Ack"]
        update = {"update_id": 77, "callback_query": tg.callback_query("cb77", tg.sent[0], data)}
        wrong = await client.post("/telegram/updates", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "x"})
        missing = await client.post("/telegram/updates", json=update)
        assert (wrong.status_code, missing.status_code) == (401, 401)
        async with rt.store.begin() as conn:
            assert (await conn.execute(select(group_acks))).all() == []
        ok = await client.post(
            "/telegram/updates", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cr3t_T0k_0123456789"}
        )
        assert ok.status_code == 200
        await wait_for(lambda: len(tg.callback_answers) == 1)
        assert tg.callback_answers[0]["text"] == "Acknowledged by @alice."
        await wait_for(lambda: len(tg.edits) == 1)
        assert "✅ acknowledged by @alice" in check_html(tg.sent[0].text)


async def test_commands_answer_with_exact_content_for_a_known_store(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack, am_url: str
) -> None:
    tg, slack = fake_telegram, fake_slack
    # a whole minute in the past (a silence that starts later than Alertmanager's clock is pending, not active)
    start = float(int(time.time()) // 60 * 60 - 60)
    clock = FrozenClock(start)
    settings = settings_from(config(tg, slack, [am_url]), sqlite_url)
    async with running(settings, clock=clock) as (client, _rt):
        critical = make_group(2, severity="critical", name="BotDown", starts=iso_z(start - 2 * 3600 - 60))
        warning = make_group(1, severity="warning", name="HighLatency", starts=iso_z(start - 600))
        older_warning = make_group(1, severity="warning", name="StaleData", starts=iso_z(start - 3 * 3600))
        for g in (warning, critical, older_warning):
            assert (await post(client, json.dumps(g))).status_code == 202
        for _ in range(4):  # the chats take one message a second
            await clock.advance(2.5)
            await asyncio.sleep(0.3)
        await wait_for(lambda: len(tg.sent) == 3 and len(slack.posted) == 3)
        at = time.strftime("%H:%M", time.gmtime(start + 10))

        tg.say("/alerts@fake_bot")
        await wait_for(lambda: len(tg.sent) == 4, timeout=15)
        answer = tg.sent[3]
        assert answer.text == (
            "Firing alert groups: 3\n"
            "1. 🔴 critical: BotDown, 2 firing for 2h 1m\n"
            "2. 🟠 warning: StaleData, 1 firing for 3h\n"
            "3. 🟠 warning: HighLatency, 1 firing for 10m"
        )
        rows = answer.reply_markup["inline_keyboard"] if answer.reply_markup else []
        assert [[b["text"] for b in row] for row in rows] == [
            [f"{i}: Ack", f"{i}: Silence 1h", f"{i}: Silence 4h", f"{i}: Silence 24h"] for i in (1, 2, 3)
        ]
        # the buttons of the answer act like those of the alert's own message (ids of their own)
        bot_down = next(m for m in tg.sent[:3] if "BotDown" in m.text)
        assert rows[0][0]["callback_data"] != callback_buttons(bot_down)["Ack"]
        tg.press(answer, rows[0][0]["callback_data"])
        tg.press(answer, rows[1][2]["callback_data"])  # StaleData, silence 4h
        await wait_for(lambda: len(tg.callback_answers) == 2, timeout=15)

        tg.say("/alerts")
        await wait_for(lambda: len(tg.sent) == 5, timeout=15)
        until = time.strftime("%H:%M", time.gmtime(start + 10 + 4 * 3600))
        assert tg.sent[4].text.splitlines()[1:3] == [
            f"1. 🔴 critical: BotDown, 2 firing for 2h 1m · ✅ @alice at {at}",
            f"2. 🟠 warning: StaleData, 1 firing for 3h · 🔕 until {until}",
        ]

        tg.say("/silences")
        await wait_for(lambda: len(tg.sent) == 6, timeout=15)
        assert tg.sent[5].text == (
            "Silences made from the chat: 1\n"
            f'1. 🔕 {{alertname="StaleData", severity="warning"}} until {until} by @alice via Telegram'
        )
        unsilence = (tg.sent[5].reply_markup or {})["inline_keyboard"][0][0]
        assert unsilence["text"] == "1: Unsilence"

        for _ in range(6):  # the edits that show the acknowledgement and the silence, one a second per chat
            await clock.advance(2.5)
            await asyncio.sleep(0.3)
        await wait_for(lambda: len(tg.edits) == 2 and len(slack.updates) == 2)
        await clock.advance(3600)
        tg.say("/status")
        await wait_for(lambda: len(tg.sent) == 7, timeout=15)
        assert tg.sent[6].text == (
            "Outbox of slack-bot, tg: 0 waiting, 0 dead letters\n"
            "slack: last delivery 1h ago\ntelegram: last delivery 1h ago"
        )

        tg.say("/help")
        tg.say("/alerts@other_bot")  # another bot's command: not ours to answer
        tg.say("/status", user_id=666, username="mallory")
        await wait_for(lambda: len(tg.sent) == 9, timeout=15)
        assert tg.sent[7].text.startswith("/alerts: the firing alert groups")
        assert tg.sent[7].text.endswith("\n\nYour Telegram user id: 7001")
        assert tg.sent[8].text == "You may not ask the notifier (your Telegram user id is 666)."

        # the same answers for Slack's slash command
        body = urlencode(
            {
                "command": "/notifier",
                "text": "silences",
                "user_id": "U0ALICE",
                "user_name": "alice",
                "channel_id": "C0TRADING",
                "response_url": slack.response_url("cmd"),
            }
        ).encode()
        r = await client.post("/slack/commands", content=body, headers=signed(SIGNING, body))
        assert r.status_code == 200
        blocks = r.json()["blocks"]
        assert blocks[0]["text"]["text"] == "Silences made from the chat: 1"
        assert blocks[1]["text"]["text"].startswith('🔕 {alertname="StaleData", severity="warning"} until ')
        assert list(slack_buttons(blocks)) == ["Unsilence"]


async def test_a_409_from_telegram_is_logged_once_and_polling_backs_off(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack, am_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A webhook set for the bot (or another process polling it) makes getUpdates answer 409: said once, and the
    poller waits before it asks again instead of hammering the API."""
    tg, slack = fake_telegram, fake_slack
    tg.webhook = {"url": "https://elsewhere.example/hook"}
    async with running(settings_from(config(tg, slack, [am_url]), sqlite_url)):
        await wait_for(lambda: tg.conflicts >= 2, timeout=15)
        polls = [r for r in tg.requests if r["method"] == "getUpdates"]
        assert len(polls) == tg.conflicts <= 3  # about one every 5 s, not a loop
    said = [r.getMessage() for r in caplog.records if "answered 409" in r.getMessage()]
    assert len(said) == 1, said


async def test_an_edit_that_fails_is_retried_through_the_outbox(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack, am_url: str
) -> None:
    tg, slack = fake_telegram, fake_slack
    async with running(settings_from(config(tg, slack, [am_url]), sqlite_url)) as (client, rt):
        assert (await post(client, json.dumps(make_group(1, name="Flaky")))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        tg.fail_next(2, 502, "Bad Gateway")  # the edit's first two tries
        tg.press(tg.sent[0], callback_buttons(tg.sent[0])["Ack"])
        await wait_for(lambda: len(tg.edits) == 1, timeout=20)
        assert "✅ acknowledged by @alice" in check_html(tg.sent[0].text)

        async def edits() -> list[Any]:
            async with rt.store.begin() as conn:
                rows = await conn.execute(select(deliveries))
                return [r for r in rows if r.kind == "edit" and r.target.startswith("tg/")]

        async def recorded() -> bool:
            return all(r.state == "sent" for r in await edits())

        await wait_for(recorded)  # the fake has the edit a moment before the worker has recorded Telegram's answer
        done = await edits()
        assert len(done) == 1 and done[0].state == "sent" and done[0].attempts == 3
