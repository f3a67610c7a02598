"""Acting from the chat, scoped exactly: a press touches only its own group, and only people allowed for that
group's receivers can make it, whatever chat the press comes from. Tried as the person who should not be able to,
through the real path: the notifier's webhook, python-telegram-bot and slack-sdk over HTTP against the strict
fakes, and a real Alertmanager 0.25 for the silences, on SQLite and PostgreSQL.

Two teams: receiver `team-a` posts to Telegram chat A and Slack #a, and alice (7001, U0ALICE) may act on its
groups; receiver `team-b` posts to chat B and #b, and mallory (7002, U0MALLORY) may act on its groups.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from aiohttp import web
from sqlalchemy import select

from notifier.store.tables import action_log, group_acks
from tests.fakes.slack import FakeSlack, signed
from tests.fakes.telegram import FakeTelegram, Sent
from tests.helpers import TOKEN, make_group, settings_from, wait_for
from tests.notifier.actions.chat import SIGNING, amtool_silences, callback_buttons, slack_buttons
from tests.notifier.harness import post, running

CHAT_A, CHAT_B = -1001000000001, -1001000000002
ALICE, MALLORY = 7001, 7002


@pytest.fixture
async def tg() -> Any:
    fake = await FakeTelegram(chats={CHAT_A, CHAT_B}).start()
    yield fake
    await fake.stop()


@pytest.fixture
async def slack() -> Any:
    fake = await FakeSlack(channels={"#a": "C0A", "C0A": "C0A", "#b": "C0B", "C0B": "C0B"}).start()
    yield fake
    await fake.stop()


def config(tg: FakeTelegram, slack: FakeSlack, am: str, **telegram: Any) -> dict[str, Any]:
    def receiver(name: str, chat: int, channel: str, tg_user: int, slack_user: str) -> dict[str, Any]:
        return {
            "name": name,
            "telegram": [{"bot_token": tg.token, "chat_id": chat, "api_url": tg.url}],
            "slack": [{"bot_token": slack.token, "channel": channel, "api_url": slack.api_url}],
            "actions": {"allowed": {"telegram": [tg_user], "slack": [slack_user]}},
        }

    return {
        "server": {"auth": {"bearer_token": TOKEN}},
        "delivery": {"poll_interval": "50ms", "backoff_initial": "100ms", "backoff_max": "1s"},
        "alertmanager": {"urls": [am]},
        "actions": {
            "telegram": {"poll_timeout": "1s", "lease": "10s", **telegram},
            "slack": {"signing_secret": SIGNING, "response_urls": [f"{slack.url}/respond/"]},
        },
        "receivers": [
            receiver("team-a", CHAT_A, "#a", ALICE, "U0ALICE"),
            receiver("team-b", CHAT_B, "#b", MALLORY, "U0MALLORY"),
        ],
        "routes": {
            "receiver": "team-a",
            "routes": [
                {"matchers": ['team="a"'], "receivers": ["team-a"]},
                {"matchers": ['team="b"'], "receivers": ["team-b"]},
            ],
        },
    }


def group(team: str, name: str = "HighCPU", *, key: str | None = None, fingerprint: str | None = None) -> str:
    g = make_group(1, severity="warning", name=name, extra_labels={"team": team})
    g["groupKey"] = key or f'{{}}/{{team="{team}"}}:{{alertname="{name}"}}'
    g["groupLabels"] = {"alertname": name}
    g["commonLabels"] = {"alertname": name, "severity": "warning", "team": team}
    g["alerts"][0]["labels"]["bot"] = f"bot-{team}"
    g["alerts"][0]["fingerprint"] = fingerprint or f"{team * 16}"[:16]
    return json.dumps(g)


def message(tg: FakeTelegram, chat: int, name: str = "HighCPU") -> Sent:
    return next(m for m in tg.sent if m.chat_id == chat and name in m.text)


def slack_press(slack: FakeSlack, value: str, user: str, channel: str, response_url: str | None = None) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower()},
        "channel": {"id": channel},
        "container": {"message_ts": slack.posted[0].ts},
        "trigger_id": f"trigger-{time.monotonic_ns()}",
        "response_url": response_url or slack.response_url(value[-6:]),
        "actions": [{"action_id": "notifier-0", "value": value, "type": "button"}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def am_alerts(am: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{am}/api/v2/alerts", timeout=5)
    assert r.status_code == 200
    result: list[dict[str, Any]] = r.json()
    return result


def fire_in_alertmanager(am: str, *teams: str, name: str = "HighCPU") -> dict[str, str]:
    """The alerts as Prometheus would post them; their fingerprints as Alertmanager computes them, by team."""
    now = time.time()
    alerts = [
        {
            "labels": {"alertname": name, "severity": "warning", "team": t, "bot": f"bot-{t}", "symbol": "BTC/USDT"},
            "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
            "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
        }
        for t in teams
    ]
    assert httpx.post(f"{am}/api/v2/alerts", json=alerts, timeout=5).status_code == 200
    return {a["labels"]["team"]: a["fingerprint"] for a in am_alerts(am) if a["labels"]["alertname"] == name}


async def test_a_person_allowed_for_one_team_cannot_act_on_the_other_teams_group_from_anywhere(
    store_url: str, tg: FakeTelegram, slack: FakeSlack, am_url: str
) -> None:
    async with running(settings_from(config(tg, slack, am_url), store_url)) as (client, rt):
        prints = fire_in_alertmanager(am_url, "a", "b")
        for team in ("a", "b"):
            assert (await post(client, group(team, fingerprint=prints[team]))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 2 and len(slack.posted) == 2)

        # /alerts in team b's chat: only team b's group
        tg.say("/alerts", chat_id=CHAT_B, user_id=MALLORY, username="mallory")
        await wait_for(lambda: len(tg.sent) == 3, timeout=15)
        listing = tg.sent[2].text
        assert listing.startswith("Firing alert groups: 1\n") and "team=b" in listing and "team=a" not in listing

        # team a's Silence, pressed by mallory (from team b's chat, or from team a's): refused, nothing made
        silence_a = callback_buttons(message(tg, CHAT_A))["Silence 1h"]
        for chat_message in (message(tg, CHAT_B), message(tg, CHAT_A)):
            tg.press(chat_message, silence_a, user_id=MALLORY, username="mallory")
        await wait_for(lambda: len(tg.callback_answers) == 2, timeout=15)
        assert {a["text"] for a in tg.callback_answers} == {
            f"You may not act on this alert group (your Telegram user id is {MALLORY})."
        }
        # team a's Ack, pressed in Slack by mallory from #b: refused
        ack_a = slack_buttons(next(p for p in slack.posted if p.channel == "C0A").blocks)["Ack"]
        body = slack_press(slack, ack_a, "U0MALLORY", "C0B")
        assert (await client.post("/slack/actions", content=body, headers=signed(SIGNING, body))).status_code == 200
        await wait_for(lambda: len(slack.responses) == 1)
        assert slack.responses[0]["text"] == "You may not act on this alert group (your Slack user id is U0MALLORY)."
        assert amtool_silences(am_url) == []
        async with rt.store.begin() as conn:
            assert (await conn.execute(select(group_acks))).all() == []
            refused = (await conn.execute(select(action_log).where(action_log.c.outcome == "refused"))).all()
        assert len(refused) == 3

        # alice may act on team a's group, and her silence covers exactly it
        tg.press(message(tg, CHAT_A), silence_a, user_id=ALICE, username="alice")
        await wait_for(lambda: len(tg.callback_answers) == 3, timeout=15)
        assert tg.callback_answers[2]["text"].startswith("Silenced until ")
        (made,) = amtool_silences(am_url)
        assert {(m["name"], m["value"], m["isEqual"], m["isRegex"]) for m in made["matchers"]} == {
            ("team", "a", True, False),
            ("alertname", "HighCPU", True, False),
        }
        silenced = {a["labels"]["team"]: a["status"]["silencedBy"] for a in am_alerts(am_url)}
        assert silenced == {"a": [made["id"]], "b": []}  # team b's HighCPU is not silenced

        # mallory's /silences does not list alice's silence, and alice's Unsilence is not hers to press
        tg.say("/silences", chat_id=CHAT_B, user_id=MALLORY, username="mallory")
        tg.say("/silences", chat_id=CHAT_A, user_id=ALICE, username="alice")
        await wait_for(lambda: len(tg.sent) == 5, timeout=15)
        answers = {m.chat_id: m for m in tg.sent[3:5]}
        assert answers[CHAT_B].text == "No silence made from the chat is in force on a group you may act on."
        assert answers[CHAT_A].text.startswith("Silences made from the chat: 1\n1. 🔕 {")
        unsilence = (answers[CHAT_A].reply_markup or {})["inline_keyboard"][0][0]["callback_data"]
        tg.press(answers[CHAT_A], unsilence, user_id=MALLORY, username="mallory")
        await wait_for(lambda: len(tg.callback_answers) == 4, timeout=15)
        assert tg.callback_answers[3]["text"].startswith("You may not act on this alert group")
        assert [s["id"] for s in amtool_silences(am_url)] == [made["id"]]


async def test_silences_list_and_expire_only_the_notifiers_own(
    sqlite_url: str, tg: FakeTelegram, slack: FakeSlack, am_url: str
) -> None:
    """A maintenance silence someone made in Alertmanager is none of the chat's business: not listed, and no button
    can expire it."""
    now = time.time()
    maintenance = {
        "matchers": [{"name": "env", "value": "prod", "isRegex": False, "isEqual": True}],
        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
        "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 7200)),
        "createdBy": "ops",
        "comment": "maintenance window",
    }
    async with httpx.AsyncClient() as http:
        sid = (await http.post(f"{am_url}/api/v2/silences", json=maintenance, timeout=5)).json()["silenceID"]
    async with running(settings_from(config(tg, slack, am_url), sqlite_url)) as (_client, _rt):
        tg.say("/silences", chat_id=CHAT_A, user_id=ALICE, username="alice")
        await wait_for(lambda: len(tg.sent) == 1, timeout=15)
        assert tg.sent[0].text == "No silence made from the chat is in force on a group you may act on."
        assert tg.sent[0].reply_markup is None
    assert [s["id"] for s in amtool_silences(am_url)] == [sid]


async def test_a_silence_covers_exactly_its_group_or_is_refused(
    store_url: str, tg: FakeTelegram, slack: FakeSlack, am_url: str
) -> None:
    async with running(settings_from(config(tg, slack, am_url), store_url)) as (client, _rt):
        prints = fire_in_alertmanager(am_url, "a", "b")
        # grouped at the root by alertname alone, although the other team's HighCPU is in Alertmanager too
        root = group("a", key='{}:{alertname="HighCPU"}', fingerprint=prints["a"])
        # a route that groups by nothing: its silence would match every alert of the route
        everything = group("a", name="Anything", key="{}:{}", fingerprint="f" * 16)
        for body in (root, everything):
            assert (await post(client, body)).status_code == 202
        await wait_for(lambda: len([m for m in tg.sent if m.chat_id == CHAT_A]) == 2)
        for name in ("HighCPU", "Anything"):
            m = message(tg, CHAT_A, name)
            tg.press(m, callback_buttons(m)["Silence 1h"], user_id=ALICE, username="alice")
        await wait_for(lambda: len(tg.callback_answers) == 2, timeout=15)
        answers = sorted(a["text"] for a in tg.callback_answers)
        assert answers[0].startswith(
            "Not silenced: a silence of this group would also silence 1 alert(s) outside it: "
            "{alertname=HighCPU, bot=bot-b, severity=warning, symbol=BTC/USDT, team=b}"
        )
        assert answers[1] == (
            "This group has no labels a silence could match it by alone (its route groups by nothing); "
            "silence it in Alertmanager."
        )
        assert amtool_silences(am_url) == []


async def test_replays_are_handled_once_and_answers_go_only_to_slack(
    sqlite_url: str, tg: FakeTelegram, slack: FakeSlack, am_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    hook = {"mode": "webhook", "webhook_url": "https://n.example/telegram/updates", "secret_token": "t" * 24}
    internal: list[str] = []

    async def record(request: web.Request) -> web.Response:
        internal.append(request.path)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    inside = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/internal"  # type: ignore[union-attr]
    try:
        async with running(settings_from(config(tg, slack, am_url, **hook), sqlite_url)) as (client, rt):
            assert (await post(client, group("a"))).status_code == 202
            await wait_for(lambda: len(tg.sent) == 1 and len(slack.posted) == 1)

            # one signed Slack press, resent as it was, and again as Slack's retry
            ack = slack_buttons(slack.posted[0].blocks)["Ack"]
            body = slack_press(slack, ack, "U0ALICE", "C0A")
            headers = signed(SIGNING, body)
            for extra in ({}, {}, {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}):
                r = await client.post("/slack/actions", content=body, headers={**headers, **extra})
                assert r.status_code == 200
            # one Telegram update, posted twice
            m = tg.sent[0]
            update = {"update_id": 901, "callback_query": tg.callback_query("q901", m, callback_buttons(m)["Ack"])}
            for _ in range(2):
                r = await client.post(
                    "/telegram/updates", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "t" * 24}
                )
                assert r.status_code == 200
            # a genuine press whose response_url points inside the network; and callback data with a NUL
            inward = slack_press(slack, ack, "U0ALICE", "C0A", response_url=inside)
            await client.post("/slack/actions", content=inward, headers=signed(SIGNING, inward))
            nul = {"update_id": 902, "callback_query": tg.callback_query("q902", m, "na2-\x00" + "A" * 21)}
            await client.post("/telegram/updates", json=nul, headers={"X-Telegram-Bot-Api-Secret-Token": "t" * 24})
            await wait_for(lambda: len(tg.callback_answers) == 2, timeout=15)
            await asyncio.sleep(0.5)
            async with rt.store.begin() as conn:
                logged = (await conn.execute(select(action_log.c.action, action_log.c.outcome))).all()
            assert sorted(logged) == sorted(
                [("ack", "done"), ("ack", "unchanged"), ("ack", "unchanged"), ("press", "expired")]
            )
            assert len(slack.responses) == 1
            assert sorted(a["text"] for a in tg.callback_answers) == [
                "Acknowledged already.",
                "This button has expired.",
            ]
            assert internal == []
            assert "Traceback" not in caplog.text
    finally:
        await runner.cleanup()


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.INFO)
    yield
