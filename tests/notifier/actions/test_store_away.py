"""A press or a command while the notifier's database is away: tried again for a few seconds, then answered with
what happened and what to do. Never left unanswered (Telegram would show the button spinning, Slack nothing), and
once the database is back, pressing again works. PostgreSQL behind a proxy the test cuts; Telegram's updates come
by webhook, so that they arrive while the store is away (a poller stops polling without its lease)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from notifier.actions import service
from notifier.actions.service import STORE_AWAY
from notifier.settings import Settings
from notifier.store.tables import group_acks, group_silences, timeline
from tests.fakes.slack import FakeSlack, signed
from tests.fakes.tcp import TcpProxy
from tests.fakes.telegram import FakeTelegram, check_html
from tests.helpers import make_group, settings_from, wait_for
from tests.notifier.actions.chat import (
    SIGNING,
    amtool_silences,
    callback_buttons,
    config,
    slack_buttons,
    slack_press,
)
from tests.notifier.harness import post, running

SECRET = "s3cr3t_T0k_0123456789"
HOOK = {"mode": "webhook", "webhook_url": "https://notifier.example/telegram/updates", "secret_token": SECRET}
CHAT = -1001234567890


async def _update(client: httpx.AsyncClient, update: dict[str, Any]) -> None:
    r = await client.post("/telegram/updates", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
    assert r.status_code == 200, r.text


def _command(update_id: int, text: str) -> dict[str, Any]:
    user = {"id": 7001, "is_bot": False, "first_name": "Alice", "username": "alice"}
    entity = {"type": "bot_command", "offset": 0, "length": len(text.split()[0])}
    chat = {"id": CHAT, "type": "supergroup", "title": "alerts"}
    message = {"message_id": update_id, "date": int(time.time()), "chat": chat, "from": user, "text": text}
    return {"update_id": update_id, "message": {**message, "entities": [entity]}}


async def _behind_a_proxy(
    pg_url: str, tg: FakeTelegram, slack: FakeSlack, am_url: str, proxy: TcpProxy | None = None
) -> tuple[TcpProxy, Settings]:
    """The notifier's settings with PostgreSQL reached through a proxy the test can cut (and must cut at its end)."""
    proxy = proxy or TcpProxy(5432)
    await proxy.start()
    url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    cfg = {**config(tg, slack, [am_url], telegram=HOOK), "storage": {"url": url, "connect_timeout": "2s"}}
    return proxy, settings_from(cfg, url)


async def _acks(rt: Any) -> int:
    async with rt.store.begin() as conn:
        return len((await conn.execute(select(group_acks))).all())


async def test_a_press_and_a_command_while_the_store_is_away_are_answered_and_a_press_again_works(
    pg_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack, am_url: str
) -> None:
    tg, slack = fake_telegram, fake_slack
    proxy, settings = await _behind_a_proxy(pg_url, tg, slack, am_url)
    async with running(settings) as (client, rt):
        assert (await post(client, json.dumps(make_group(1, name="StoreAway")))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1 and len(slack.posted) == 1)
        ack = callback_buttons(tg.sent[0])["Ack"]
        await proxy.cut()

        await _update(client, {"update_id": 1, "callback_query": tg.callback_query("cb1", tg.sent[0], ack)})
        await _update(client, _command(2, "/status"))
        body = slack_press(slack, slack_buttons(slack.posted[0].blocks)["Ack"])
        assert (await client.post("/slack/actions", content=body, headers=signed(SIGNING, body))).status_code == 200

        await wait_for(lambda: len(tg.callback_answers) == 1 and len(slack.responses) == 1, timeout=30)
        assert tg.callback_answers[0]["text"] == STORE_AWAY
        assert tg.callback_answers[0]["show_alert"]  # a box the person has to dismiss, not a passing toast
        assert slack.responses[0]["text"] == STORE_AWAY
        await wait_for(lambda: any(m.text == STORE_AWAY and m.chat_id == CHAT for m in tg.sent), timeout=30)

        await proxy.start()  # the database is back: pressing again acknowledges
        await _update(client, {"update_id": 3, "callback_query": tg.callback_query("cb3", tg.sent[0], ack)})
        await wait_for(lambda: len(tg.callback_answers) == 2, timeout=30)
        assert tg.callback_answers[1]["text"] == "Acknowledged by @alice."
        assert await _acks(rt) == 1
    await proxy.cut()


async def test_a_press_while_the_store_restarts_is_done_once_it_is_back(
    pg_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack, am_url: str
) -> None:
    tg, slack = fake_telegram, fake_slack
    proxy, settings = await _behind_a_proxy(pg_url, tg, slack, am_url)
    async with running(settings) as (client, rt):
        assert (await post(client, json.dumps(make_group(1, name="Restart")))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        ack = callback_buttons(tg.sent[0])["Ack"]
        await proxy.cut()
        await _update(client, {"update_id": 1, "callback_query": tg.callback_query("cb1", tg.sent[0], ack)})
        await asyncio.sleep(0.3)  # the first try has failed; the next comes after half a second
        await proxy.start()
        await wait_for(lambda: len(tg.callback_answers) == 1, timeout=30)
        assert tg.callback_answers[0]["text"] == "Acknowledged by @alice."
        assert await _acks(rt) == 1
    await proxy.cut()


@pytest.mark.parametrize(
    ("away", "then"),
    [(1.0, "within the tries"), (10.0, "back"), (10.0, "expired"), (10.0, "resolved"), (10.0, "restart")],
)
async def test_a_silence_made_as_the_store_goes_away_is_made_once_and_said_so(
    pg_url: str,
    fake_telegram: FakeTelegram,
    fake_slack: FakeSlack,
    am_url: str,
    away: float,
    then: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database goes away the moment Alertmanager has made the silence, before the notifier recorded it. Back
    within the press's tries, the next try records that silence. Away longer, the answer says the silence holds;
    once the database is back, the notifier records it by itself and the message shows it, unless someone expired
    it in Alertmanager or the group resolved meanwhile. A notifier restarted before it could has lost that, and a
    press then replaces the unrecorded silence. Never two silences."""
    monkeypatch.setattr(service, "PLACEHOLDER_HOLD", 1.0)  # a press's claim on the group, once the database is back
    if then == "restart":  # the notifier stops before the database is back: it never records the silence itself
        monkeypatch.setattr(service, "RECORD_LATER_DELAYS", (600.0,))
    tg, slack = fake_telegram, fake_slack
    pg = TcpProxy(5432)

    async def away_once_the_silence_is_made(asked: bytes) -> None:
        if b"POST /api/v2/silences" in asked and not made:
            made.append(asked)
            await pg.cut()
            timers.append(
                asyncio.get_running_loop().call_later(away, lambda: back.append(asyncio.ensure_future(pg.start())))
            )

    def in_force() -> list[dict[str, Any]]:
        return [s for s in amtool_silences(am_url) if s["status"]["state"] == "active"]

    made: list[bytes] = []
    back: list[asyncio.Future[None]] = []
    timers: list[asyncio.TimerHandle] = []
    am = TcpProxy(int(am_url.rsplit(":", 1)[1]), before_reply=away_once_the_silence_is_made)
    await am.start()
    _, settings = await _behind_a_proxy(pg_url, tg, slack, f"http://127.0.0.1:{am.port}", pg)
    async with running(settings) as (client, rt):
        assert (await post(client, json.dumps(make_group(1, name="SilenceAway")))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        silence = callback_buttons(tg.sent[0])["Silence 1h"]
        await _update(client, {"update_id": 1, "callback_query": tg.callback_query("cb1", tg.sent[0], silence)})
        await wait_for(lambda: len(tg.callback_answers) == 1, timeout=30)
        assert made  # the database went away as the silence came back from Alertmanager
        answer = tg.callback_answers[0]["text"]
        (first,) = in_force()
        if then == "within the tries":
            assert back and answer.startswith("Silenced until "), answer
        else:
            assert not back
            assert answer.startswith("Silenced in Alertmanager until "), answer
            assert "cannot reach its database" in answer and "shows here once the database is back" in answer
            for timer in timers:
                timer.cancel()
            assert not tg.edits
        if then == "expired":  # someone took the answer's advice and expired it in Alertmanager
            caplog.set_level(logging.INFO, logger="notifier.actions")
            async with httpx.AsyncClient() as am_client:
                (await am_client.delete(f"{am_url}/api/v2/silence/{first['id']}")).raise_for_status()
            await pg.start()
            await wait_for(lambda: "is no longer in force in Alertmanager; not recorded" in caplog.text, timeout=30)
            assert not tg.edits and not in_force()
            await _update(client, {"update_id": 2, "callback_query": tg.callback_query("cb2", tg.sent[0], silence)})
            await wait_for(lambda: len(tg.callback_answers) == 2, timeout=30)
            assert tg.callback_answers[1]["text"].startswith("Silenced until "), tg.callback_answers
        if then == "resolved":  # the group resolves once the database is back, before the silence is recorded
            caplog.set_level(logging.INFO, logger="notifier.actions")
            await am.cut()  # each background try asks Alertmanager first: none gets through meanwhile
            await pg.start()
            resolve = make_group(1, name="SilenceAway", status="resolved")
            assert (await post(client, json.dumps(resolve))).status_code == 202
            await am.start()
            await wait_for(lambda: "resolved or holds another silence now" in caplog.text, timeout=30)
            async with rt.store.begin() as conn:
                assert not (await conn.execute(select(group_silences))).all()
            assert not any("silenced until" in check_html(m.text) for m in [*tg.sent, *tg.edits])
        if then == "back":
            await pg.start()  # no second press: the notifier records the silence by itself
        if then in ("within the tries", "back"):
            await wait_for(lambda: len(tg.edits) >= 1, timeout=30)  # the message shows it: the silence is recorded
            assert "🔕 silenced until" in check_html(tg.sent[0].text)
            assert f"/#/silences/{first['id']}" in tg.sent[0].text
            await _update(client, {"update_id": 2, "callback_query": tg.callback_query("cb2", tg.sent[0], silence)})
            await wait_for(lambda: len(tg.callback_answers) == 2, timeout=30)
            assert tg.callback_answers[1]["text"].startswith("Silenced already, until "), tg.callback_answers
            assert [s["id"] for s in in_force()] == [first["id"]]
            if then == "back":  # the group's timeline tells why the silence showed late
                async with rt.store.begin() as conn:
                    lines = (await conn.execute(select(timeline.c.text))).scalars().all()
                assert any("recorded once the database was back" in line for line in lines), lines
    if then == "restart":
        await pg.start()
        async with running(settings) as (client, _rt):
            await asyncio.sleep(1.5)  # the first press's claim has lapsed
            await _update(client, {"update_id": 2, "callback_query": tg.callback_query("cb2", tg.sent[0], silence)})
            await wait_for(lambda: len(tg.callback_answers) == 2, timeout=30)
            assert tg.callback_answers[1]["text"].startswith("Silenced until "), tg.callback_answers
            (now_in_force,) = in_force()  # the unrecorded silence was replaced, not joined by a second
            await wait_for(lambda: len(tg.edits) >= 1)
            assert f"/#/silences/{now_in_force['id']}" in tg.sent[0].text
    for timer in timers:
        timer.cancel()
    await pg.cut()
    await am.cut()
