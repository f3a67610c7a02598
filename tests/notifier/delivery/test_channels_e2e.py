"""Webhook in, provider out: every captured payload reaches Telegram, Slack (webhook and bot) and email through the
real SDKs, readable, escaped, within limits, threaded, and retried until delivered."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import SMTPServer, mail_text
from tests.fakes.telegram import FakeTelegram, check_html, utf16
from tests.helpers import fixture_bytes, fixture_names, make_group, settings_from, wait_for
from tests.notifier.delivery.conftest import all_channels
from tests.notifier.harness import AUTH, delivery_rows, post, running


def _bodies(slack: FakeSlack, via: str) -> list[str]:
    return [p.all_text for p in slack.posted if p.via == via]


@pytest.mark.parametrize("name", fixture_names())
async def test_each_captured_payload_reaches_every_channel(
    name: str, sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack, smtp: SMTPServer
) -> None:
    expected = json.loads(fixture_bytes(name))
    async with running(settings_from(all_channels(fake_telegram, fake_slack, smtp), sqlite_url)) as (client, rt):
        r = await post(client, fixture_bytes(name))
        assert r.status_code == 202 and r.json()["queued"] == 4
        await wait_for(lambda: len(fake_telegram.sent) == 1 and len(fake_slack.posted) == 2 and len(smtp.messages) == 1)
        tg = fake_telegram.sent[0]
        assert tg.chat_id == -1001234567890 and tg.message_thread_id == 7 and tg.parse_mode == "HTML"
        visible = check_html(tg.text)
        firing = expected["status"] == "firing"
        assert ("CRITICAL" in visible or "INFO" in visible) if firing else "RESOLVED" in visible
        for alert in expected["alerts"]:
            assert alert["labels"]["bot"] in visible
            assert alert["annotations"]["summary"] in visible
        # info is silent by default on Telegram; critical rings
        assert tg.disable_notification is (expected["commonLabels"]["severity"] == "info")
        assert tg.reply_markup is not None  # URL buttons (Graph, Silence, ...)
        for text in _bodies(fake_slack, "webhook") + _bodies(fake_slack, "api"):
            for alert in expected["alerts"]:
                assert alert["labels"]["bot"] in text
            assert ("RESOLVED" in text) is (not firing)
        mail = smtp.messages[0]
        assert sorted(mail.rcpt_tos) == ["oncall@example.com", "trader@example.com"]
        subject = str(mail.message["Subject"])
        assert subject.startswith("[RESOLVED]" if not firing else "[")
        assert expected["commonLabels"]["alertname"] in subject
        html = mail_text(mail.message, "html")
        text = mail_text(mail.message, "plain")
        for alert in expected["alerts"]:
            assert alert["annotations"]["summary"] in text
        assert "<html" in html
        assert mail.message["Message-ID"]
        await wait_for(lambda: _all_sent(rt))


async def test_firing_and_resolved_look_different(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack, smtp: SMTPServer
) -> None:
    async with running(settings_from(all_channels(fake_telegram, fake_slack, smtp), sqlite_url)) as (client, _rt):
        await post(client, fixture_bytes("01-critical-firing-two-alerts.json"))
        await wait_for(lambda: len(fake_telegram.sent) == 1 and len(smtp.messages) == 1)
        await post(client, fixture_bytes("04-critical-all-resolved.json"))
        await wait_for(
            lambda: (
                len(fake_telegram.sent) == 2
                and len(smtp.messages) == 2
                and len([p for p in fake_slack.posted if p.via == "webhook"]) == 2
            ),
            timeout=15,
        )
        fire, res = fake_telegram.sent
        assert fire.text.startswith("🔴") and "CRITICAL" in fire.text
        assert res.text.startswith("✅") and "RESOLVED" in res.text
        assert "resolved after" in res.text and "firing for" in fire.text
        colors = [p.color for p in fake_slack.posted if p.via == "webhook"]
        assert colors[0] != colors[-1]
        assert str(smtp.messages[1].message["Subject"]).startswith("[RESOLVED]")


async def test_hostile_labels_arrive_escaped_and_are_accepted(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack, smtp: SMTPServer
) -> None:
    nasty = '<script>&"x"'
    body = make_group(1, extra_labels={"note": nasty})
    body["alerts"][0]["annotations"]["summary"] = f"summary {nasty} <b>bold?</b> & more"
    body["alerts"][0]["labels"]["bot"] = "<i>evil-bot"
    async with running(settings_from(all_channels(fake_telegram, fake_slack, smtp), sqlite_url)) as (client, rt):
        await post(client, json.dumps(body))
        await wait_for(lambda: len(fake_telegram.sent) == 1 and len(fake_slack.posted) == 2 and len(smtp.messages) == 1)
        tg = fake_telegram.sent[0]
        assert fake_telegram.refused == 0
        visible = check_html(tg.text)
        assert nasty in visible and "<i>evil-bot" in visible  # shown literally, not as markup
        assert "&lt;script&gt;" in tg.text
        for p in fake_slack.posted:
            assert "&lt;script&gt;&amp;" in p.all_text
            assert "<script>" not in p.all_text
        html = mail_text(smtp.messages[0].message, "html")
        assert "<script>" not in html and "&lt;script&gt;" in html
        await wait_for(lambda: _all_sent(rt))


async def test_300_alerts_are_all_represented_within_limits_split_between_alerts(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack
) -> None:
    body = make_group(300, severity="critical")
    cfg = all_channels(fake_telegram, fake_slack, None)
    for r in cfg["receivers"]:
        r["message"] = {"max_alerts": 300}
    async with running(settings_from(cfg, sqlite_url)) as (client, rt):
        await post(client, json.dumps(body))
        await wait_for(lambda: _all_sent(rt), timeout=60)
        assert fake_telegram.refused == 0 and fake_slack.refused == 0
        tg_parts = [s for s in fake_telegram.sent]
        assert len(tg_parts) > 1
        for i, part in enumerate(tg_parts):
            visible = check_html(part.text)  # every part is valid HTML on its own: no split inside a tag
            assert utf16(visible) <= 4096
            assert f"({i + 1}/{len(tg_parts)})" in visible
        seen = "".join(check_html(p.text) for p in tg_parts)
        for i in range(300):
            assert f"bot-{i:03d}" in seen, i
        # later parts reply to the first, so the chat shows one incident
        assert all(p.reply_to_message_id == tg_parts[0].message_id for p in tg_parts[1:])
        for via in ("webhook", "api"):
            posts = [p for p in fake_slack.posted if p.via == via]
            assert len(posts) >= 1
            text = "\n".join(p.all_text for p in posts)
            for i in range(300):
                assert f"bot-{i:03d}" in text, (via, i)
            for p in posts:
                assert len(p.blocks) <= 50
                assert all(len(b["text"]["text"]) <= 3000 for b in p.blocks if b["type"] == "section")


async def test_by_default_a_message_spells_out_100_alerts_and_links_the_rest(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack
) -> None:
    body = make_group(300, severity="critical")
    async with running(settings_from(all_channels(fake_telegram, fake_slack, None), sqlite_url)) as (client, rt):
        await post(client, json.dumps(body))
        await wait_for(lambda: _all_sent(rt), timeout=60)
        seen = "".join(check_html(p.text) for p in fake_telegram.sent)
        assert sum(f"bot-{i:03d}" in seen for i in range(300)) == 100
        assert "+200 more alerts — see Alertmanager" in seen
        last = fake_telegram.sent[-1].text
        assert 'href="http://alertmanager:9093/#/alerts?filter=' in last
        for via in ("webhook", "api"):
            text = "\n".join(p.all_text for p in fake_slack.posted if p.via == via)
            assert sum(f"bot-{i:03d}" in text for i in range(300)) == 100
            assert "+200 more alerts" in text


async def _all_sent(rt: Any) -> bool:
    rows = await delivery_rows(rt)
    return bool(rows) and all(r["state"] == "sent" for r in rows)


async def test_telegram_429_retry_after_is_honoured_and_the_message_arrives_once(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack
) -> None:
    fake_telegram.fail_next(1, 429, "Too Many Requests: retry after 2", retry_after=2)
    fake_slack.fail_next(1, 429, retry_after=2)
    cfg = all_channels(fake_telegram, fake_slack, None)
    async with running(settings_from(cfg, sqlite_url)) as (client, rt):
        t0 = time.time()
        await post(client, fixture_bytes("01-critical-firing-two-alerts.json"))
        await wait_for(lambda: _all_sent(rt), timeout=20)
        assert len(fake_telegram.sent) == 1
        tg_requests = [r for r in fake_telegram.requests if r["method"] == "sendMessage"]
        assert len(tg_requests) == 2
        assert tg_requests[1]["at"] - tg_requests[0]["at"] >= 2.0
        assert fake_telegram.sent[0].at - t0 >= 2.0
        # Slack: the rate-limited post is retried after Retry-After too, and arrives once
        assert len([p for p in fake_slack.posted]) == 2


async def test_provider_down_then_back_nothing_lost(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack
) -> None:
    port = fake_telegram.port
    await fake_telegram.stop()  # connection refused
    fake_slack.fail_next(3, 502)
    cfg = all_channels(fake_telegram, fake_slack, None, backoff_initial="200ms", backoff_max="500ms")
    async with running(settings_from(cfg, sqlite_url)) as (client, rt):
        for name in ("01-critical-firing-two-alerts.json", "02-info-firing-unicode.json"):
            assert (await post(client, fixture_bytes(name))).status_code == 202
        await asyncio.sleep(1.5)
        rows = await delivery_rows(rt)
        tg_rows = [r for r in rows if r["channel"] == "telegram"]
        assert tg_rows and all(r["state"] in ("pending", "sending") for r in tg_rows)
        assert any(r["attempts"] >= 2 and "unreachable" in (r["last_error"] or "") for r in tg_rows)
        # back, and then 502 for a while
        restarted = FakeTelegram(token=fake_telegram.token)
        restarted.down = True
        await restarted.start(port=port)
        try:
            await asyncio.sleep(1.0)
            restarted.down = False
            await wait_for(lambda: _all_sent(rt), timeout=30)
            assert sorted(s.text.split("\n")[0] for s in restarted.sent) == sorted(
                {s.text.split("\n")[0] for s in restarted.sent}
            )
            assert len(restarted.sent) == 2  # each notification once
            assert len(fake_slack.posted) == 4
        finally:
            await restarted.stop()


async def test_bad_chat_id_goes_dead_visible_and_retryable_while_others_deliver(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack
) -> None:
    cfg = all_channels(fake_telegram, fake_slack, None)
    cfg["receivers"][0]["telegram"][0]["chat_id"] = -100999  # not a chat the bot is in
    async with running(settings_from(cfg, sqlite_url)) as (client, _rt):
        await post(client, fixture_bytes("01-critical-firing-two-alerts.json"))

        async def dead() -> list[dict[str, Any]]:
            r = await client.get("/api/v1/deliveries?state=dead", headers=AUTH)
            out: list[dict[str, Any]] = r.json()["deliveries"]
            return out

        await wait_for(lambda: _count(dead, 1), timeout=10)
        d = (await dead())[0]
        assert d["target"] == "tg/telegram/0" and "chat not found" in d["last_error"].lower()
        assert d["attempts"] == 1  # permanent: not retried blindly
        await wait_for(lambda: len(fake_slack.posted) == 2)
        # the operator fixes the chat (here: the bot is added to it) and retries
        fake_telegram.chats.add(-100999)
        r = await client.post(f"/api/v1/deliveries/{d['id']}/retry", headers=AUTH)
        assert r.status_code == 202
        await wait_for(lambda: len(fake_telegram.sent) == 1)
        assert fake_telegram.sent[0].chat_id == -100999
        assert (await client.post(f"/api/v1/deliveries/{d['id']}/retry", headers=AUTH)).status_code == 409
        assert (await client.post("/api/v1/deliveries/nope/retry", headers=AUTH)).status_code == 404


async def _count(fn: Any, n: int) -> bool:
    return len(await fn()) == n


async def test_resolved_message_threads_under_the_firing_one_on_every_channel(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack, smtp: SMTPServer
) -> None:
    async with running(settings_from(all_channels(fake_telegram, fake_slack, smtp), sqlite_url)) as (client, rt):
        await post(client, fixture_bytes("01-critical-firing-two-alerts.json"))
        await wait_for(lambda: _all_sent(rt), timeout=10)
        await post(client, fixture_bytes("03-critical-one-resolved-one-firing.json"))

        def delivered(n: int) -> bool:  # every channel has its n-th message, before the group changes again
            api_posts = [p for p in fake_slack.posted if p.via == "api"]
            return len(fake_telegram.sent) == n and len(smtp.messages) == n and len(api_posts) == n

        # (a change that came while Slack's message still waited for its 1/s slot would merge into it)
        await wait_for(lambda: delivered(2), timeout=10)
        await post(client, fixture_bytes("04-critical-all-resolved.json"))
        await wait_for(lambda: delivered(3), timeout=10)
        await wait_for(lambda: _all_sent(rt), timeout=10)
        first, partial, resolved = fake_telegram.sent
        assert first.reply_to_message_id is None
        assert partial.reply_to_message_id == first.message_id
        assert resolved.reply_to_message_id == first.message_id
        assert "1 resolved" in partial.text
        api = [p for p in fake_slack.posted if p.via == "api"]
        assert api[0].thread_ts is None and api[1].thread_ts == api[0].ts and api[2].thread_ts == api[0].ts
        assert fake_slack.updates and fake_slack.updates[-1]["ts"] == api[0].ts
        assert "RESOLVED" in fake_slack.updates[-1]["text"]  # the first message now shows the current state
        m0, m1, m2 = (m.message for m in smtp.messages)
        assert m1["In-Reply-To"] == m0["Message-ID"] and m2["References"] == m0["Message-ID"]
        # once resolved, the next incident of the group starts a new thread
        await post(client, fixture_bytes("01-critical-firing-two-alerts.json").replace(b"04:05:13", b"06:05:13"))
        await wait_for(lambda: len(fake_telegram.sent) == 4, timeout=10)
        assert fake_telegram.sent[3].reply_to_message_id is None
