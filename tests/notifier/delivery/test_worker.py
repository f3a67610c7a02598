"""The outbox worker: restarts lose nothing, a group's messages keep their order, per-chat rate limits hold before
the provider has to say 429, and the Telegram edge cases (bad markup, migrated chats) are handled."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import pytest
import trustme

from notifier.clock import FrozenClock
from notifier.runtime import Runtime
from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import SMTPServer
from tests.fakes.telegram import FakeTelegram
from tests.helpers import TOKEN, fixture_bytes, make_group, settings_from, wait_for
from tests.notifier.harness import AUTH, delivery_rows, post, running


def tg_config(tg: FakeTelegram, chat: int = -1001234567890, **receiver: Any) -> dict[str, Any]:
    return {
        "server": {"auth": {"bearer_token": TOKEN}},
        "delivery": {"poll_interval": "50ms", "backoff_initial": "100ms", "backoff_max": "1s"},
        "receivers": [
            {"name": "tg", "telegram": [{"bot_token": tg.token, "chat_id": chat, "api_url": tg.url}], **receiver}
        ],
        "routes": {"receiver": "tg"},
    }


async def _all_sent(rt: Runtime) -> bool:
    rows = await delivery_rows(rt)
    return bool(rows) and all(r["state"] == "sent" for r in rows)


async def test_worker_stopped_mid_delivery_and_restarted_delivers_everything(
    sqlite_url: str, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.delay = 0.5
    settings = settings_from(tg_config(fake_telegram), sqlite_url)
    bodies = [json.dumps(make_group(2, group_key=f'{{}}:{{g="{i}"}}', name=f"Alert{i}")) for i in range(4)]
    async with running(settings) as (client, rt):
        for b in bodies:
            assert (await post(client, b)).status_code == 202
        await wait_for(lambda: any(r["method"] == "sendMessage" for r in fake_telegram.requests))
        await rt.worker.stop(grace=0.0)  # cut the delivery in flight
        in_flight = len(fake_telegram.requests) - len(fake_telegram.sent)
        rows = await delivery_rows(rt)
        assert any(r["state"] == "pending" for r in rows)
    assert len(fake_telegram.sent) < 4
    async with running(settings) as (_client, rt):
        await wait_for(lambda: _all_sent(rt), timeout=20)
    names = [s.text.split("\n")[0] for s in fake_telegram.sent]
    assert len(set(names)) == 4  # every notification arrived
    # at least once: only a message that was on the wire when the worker was cut can arrive twice
    assert len(names) - 4 <= in_flight <= 1


async def test_a_groups_messages_keep_their_order(sqlite_url: str, fake_telegram: FakeTelegram) -> None:
    fake_telegram.delay = 1.0
    async with running(settings_from(tg_config(fake_telegram), sqlite_url)) as (client, rt):
        await post(client, fixture_bytes("01-critical-firing-two-alerts.json"))
        await wait_for(lambda: any(r["method"] == "sendMessage" for r in fake_telegram.requests))
        # the firing message is on the wire; its resolution arrives now and must not overtake it
        await post(client, fixture_bytes("04-critical-all-resolved.json"))
        await wait_for(lambda: _all_sent(rt), timeout=15)
        first, second = fake_telegram.sent
        assert "CRITICAL" in first.text and "RESOLVED" in second.text
        assert second.reply_to_message_id == first.message_id


async def test_a_newer_state_merges_into_a_waiting_message(sqlite_url: str, fake_telegram: FakeTelegram) -> None:
    fake_telegram.down = True  # 502: the firing message waits in back-off
    async with running(settings_from(tg_config(fake_telegram), sqlite_url)) as (client, rt):
        await post(client, fixture_bytes("01-critical-firing-two-alerts.json"))
        await wait_for(lambda: len(fake_telegram.requests) >= 1)
        await post(client, fixture_bytes("03-critical-one-resolved-one-firing.json"))
        rows = await delivery_rows(rt)
        assert len([r for r in rows if r["state"] in ("pending", "sending")]) <= 2
        fake_telegram.down = False
        await wait_for(lambda: _all_sent(rt), timeout=15)
        # one message with the newest state: one firing, one resolved
        assert len(fake_telegram.sent) == 1
        assert "1 firing, 1 resolved" in fake_telegram.sent[0].text


async def test_per_chat_rate_limit_holds_before_the_provider_has_to_429(
    sqlite_url: str, fake_telegram: FakeTelegram
) -> None:
    """Four messages for one chat at once go out one per second (Telegram's limit for a chat), so that Telegram
    never has to refuse one. Timed by the notifier's clock, which the test moves in quarter seconds: what the fake
    server sees also carries each request's own latency, which a busy machine varies."""
    clock = FrozenClock(time.time())
    async with running(settings_from(tg_config(fake_telegram, chat=42), sqlite_url), clock=clock) as (client, rt):
        start = clock.now()
        for i in range(4):
            await post(client, json.dumps(make_group(1, group_key=f'{{}}:{{g="{i}"}}', name=f"A{i}")))
        await wait_for(lambda: len(fake_telegram.sent) == 1)
        seen: list[tuple[float, int]] = []  # (seconds on the notifier's clock, messages sent by then)
        for _ in range(80):
            await clock.advance(0.25)
            await asyncio.sleep(0.15)
            seen.append((clock.now() - start, len(fake_telegram.sent)))
            if len(fake_telegram.sent) == 4 and await _all_sent(rt):
                break
        assert len(fake_telegram.sent) == 4, seen
        assert all(sent <= 1 + math.floor(t) for t, sent in seen), seen  # never more than one a second
        assert fake_telegram.rate_limited == 0
        metrics = (await client.get("/metrics")).text
        assert 'notifier_deliveries_total{channel="telegram",outcome="sent",receiver="tg"} 4.0' in metrics
        assert 'notifier_deliveries_total{channel="telegram",outcome="rate_limited",receiver="tg"}' in metrics


async def test_messages_held_by_a_rate_limit_go_out_first_come_first_served(
    store_url: str, fake_telegram: FakeTelegram
) -> None:
    """Held messages take their turns in the order they came: each tries again when its turn comes, one slot after
    the one before it, instead of all at the moment the next slot opens, where whichever is quickest (on any
    replica) takes it. Found by the soak: an escalation's page waited 56 s behind ntfy's limit while seven newer
    messages went first."""
    clock = FrozenClock(time.time())
    cfg = {**tg_config(fake_telegram, chat=42), "storm": {"threshold": 1000}}
    async with running(settings_from(cfg, store_url), clock=clock) as (client, rt):
        for i in range(5):
            await post(client, json.dumps(make_group(1, group_key=f'{{}}:{{g="{i}"}}', name=f"Turn{i}")))
            await clock.advance(0.01)
        await wait_for(lambda: len(fake_telegram.sent) == 1)

        async def held_back() -> list[float]:
            """When each message the limit holds tries again, in the order they came."""
            rows = await delivery_rows(rt)
            return [
                r["next_attempt_at"] for r in rows if r["state"] == "pending" and r["next_attempt_at"] > clock.now()
            ]

        async def held(n: int) -> bool:
            return len(await held_back()) == n

        await wait_for(lambda: held(4))
        turns = await held_back()
        # in the order they came, and not all at the one moment the next slot opens (1/s into one chat)
        assert turns == sorted(turns) and turns[-1] - turns[0] >= 1.0, turns

        # all four due at once come in one claim: one goes, and each of the others counts the ones held before it
        await clock.advance(10)
        await wait_for(lambda: len(fake_telegram.sent) == 2)

        await wait_for(lambda: held(3))
        turns = [round(at - clock.now(), 3) for at in await held_back()]
        gaps = [b - a for a, b in itertools.pairwise([0.0, *turns])]
        assert len(turns) == 3 and min(gaps) >= 1.0, turns  # a slot each, in the order they came
        for _ in range(20):
            if len(fake_telegram.sent) == 5:
                break
            await clock.advance(0.5)
            await asyncio.sleep(0.3)
        assert len(fake_telegram.sent) == 5
        assert [s.text.split("Turn")[1][0] for s in fake_telegram.sent] == ["0", "1", "2", "3", "4"]
        assert fake_telegram.rate_limited == 0


async def test_group_chat_flood_limit_of_20_per_minute(sqlite_url: str, fake_telegram: FakeTelegram) -> None:
    from notifier.channels.telegram import TelegramChannel
    from notifier.delivery.ratelimit import MemoryRateLimiter

    settings = settings_from(tg_config(fake_telegram), sqlite_url)
    rt = Runtime.build(settings)
    ch = rt.channels["tg/telegram/0"]
    assert isinstance(ch, TelegramChannel)
    limiter = MemoryRateLimiter()
    allowed = []
    now = 1000.0
    for _ in range(40):
        wait = await limiter.reserve(ch.rate_rules(), now)
        if wait == 0:
            allowed.append(now)
        now += max(wait, 1.0)
    in_first_minute = [t for t in allowed if t < 1060.0]
    assert len(in_first_minute) == 20
    windows = [len([t for t in allowed if s <= t < s + 60]) for s in allowed]
    assert max(windows) <= 20
    await rt.store.dispose()


async def test_every_part_of_a_split_message_counts_against_the_group_limit(
    sqlite_url: str, fake_telegram: FakeTelegram
) -> None:
    """A 300-alert group goes out as several messages; Telegram counts each of them against the group's 20 a minute,
    so the notifier does too: what follows waits its turn instead of running into 429s."""
    fake_telegram.group_limit_per_minute = 20
    cfg = {**tg_config(fake_telegram), "storm": {"threshold": 1000}}  # no folding into a summary: one by one
    async with running(settings_from(cfg, sqlite_url)) as (client, rt):
        await post(client, json.dumps(make_group(300, group_key='{}:{g="big"}')))
        await wait_for(lambda: len(fake_telegram.sent) >= 1, timeout=10)
        parts = int(fake_telegram.sent[0].text.split("(1/", 1)[1].split(")", 1)[0])
        assert parts >= 2
        for i in range(17):
            await post(client, json.dumps(make_group(1, group_key=f'{{}}:{{g="{i}"}}', name=f"A{i}")))
        # warnings may use 16 of the 20 (the rest is kept for critical alerts): the parts count, so 16 messages in
        # all reach the chat within the minute, and the other groups wait
        await wait_for(lambda: len(fake_telegram.sent) >= 16, timeout=40)
        await asyncio.sleep(2.5)
        assert len(fake_telegram.sent) == 16
        assert fake_telegram.rate_limited == 0
        waiting = [r for r in await delivery_rows(rt) if r["state"] == "pending"]
        assert len(waiting) == 1 + parts  # 17 singles, 16 - parts of them sent


async def test_rejected_markup_is_resent_as_plain_text(
    sqlite_url: str, fake_telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    template = (
        "{% macro header(g) %}<div>{{ g.title }}</div>{% endmacro %}"
        "{% macro alert(a, detail) %}{{ a.title }}{% endmacro %}"
    )
    cfg = tg_config(fake_telegram, templates={"telegram": {"inline": template}})
    async with running(settings_from(cfg, sqlite_url)) as (client, rt):
        await post(client, fixture_bytes("02-info-firing-unicode.json"))
        await wait_for(lambda: _all_sent(rt), timeout=10)
        assert fake_telegram.refused == 1
        sent = fake_telegram.sent[0]
        assert sent.parse_mode is None and "<div>" not in sent.text and "NoRecentTrades" in sent.text


async def test_migrated_chat_is_followed_and_logged_loudly(
    sqlite_url: str, fake_telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    fake_telegram.chats.add(-100777)
    fake_telegram.fail_next(1, 400, "Bad Request: group chat was upgraded to a supergroup chat", migrate_to=-100777)
    caplog.set_level(logging.ERROR, "notifier.telegram")
    async with running(settings_from(tg_config(fake_telegram, chat=42), sqlite_url)) as (client, rt):
        await post(client, fixture_bytes("01-critical-firing-two-alerts.json"))
        await wait_for(lambda: _all_sent(rt), timeout=10)
        assert fake_telegram.sent[0].chat_id == -100777
        assert any("MIGRATED" in r.getMessage() and "-100777" in r.getMessage() for r in caplog.records)


async def test_email_starttls_and_auth(sqlite_url: str, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = __import__("ssl").create_default_context(__import__("ssl").Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    (tmp_path / "pw").write_text("mail-secret\n")
    smtp = SMTPServer(tls_context=server_ctx, user="alerts", password="mail-secret").start()
    try:
        cfg = {
            "server": {"auth": {"bearer_token": TOKEN}},
            "delivery": {"poll_interval": "50ms", "backoff_initial": "100ms", "max_attempts": 2},
            "receivers": [
                {
                    "name": "mail",
                    "email": [
                        {
                            "host": "127.0.0.1",
                            "port": smtp.port,
                            "tls": "starttls",
                            "username": "alerts",
                            "password_file": str(tmp_path / "pw"),
                            "ca_file": str(ca_file),
                            "from": "alerts@example.com",
                            "to": ["oncall@example.com"],
                        }
                    ],
                },
                {
                    "name": "badmail",
                    "email": [
                        {
                            "host": "127.0.0.1",
                            "port": smtp.port,
                            "tls": "starttls",
                            "username": "alerts",
                            "password": "wrong",
                            "ca_file": str(ca_file),
                            "from": "alerts@example.com",
                            "to": ["oncall@example.com"],
                        }
                    ],
                },
            ],
            "routes": {"receiver": "mail", "routes": [{"receivers": ["mail", "badmail"]}]},
        }
        async with running(settings_from(cfg, sqlite_url)) as (client, rt):
            await post(client, fixture_bytes("01-critical-firing-two-alerts.json"))

            async def settled() -> bool:
                rows = await delivery_rows(rt)
                return len(rows) == 2 and all(r["state"] in ("sent", "dead") for r in rows)

            await wait_for(settled, timeout=15)
            rows = {r["receiver"]: r for r in await delivery_rows(rt)}
            assert rows["mail"]["state"] == "sent"
            assert rows["badmail"]["state"] == "dead" and "login refused" in rows["badmail"]["last_error"]
            assert "wrong" not in rows["badmail"]["last_error"]
            assert len(smtp.messages) == 1
            assert smtp.messages[0].message["X-Priority"] == "1"  # critical
            r = await client.get("/api/v1/deliveries?state=dead", headers=AUTH)
            assert [d["receiver"] for d in r.json()["deliveries"]] == ["badmail"]
    finally:
        smtp.stop()


async def test_slack_webhook_that_does_not_exist_goes_dead(sqlite_url: str, fake_slack: FakeSlack) -> None:
    cfg = {
        "server": {"auth": {"bearer_token": TOKEN}},
        "delivery": {"poll_interval": "50ms"},
        "receivers": [{"name": "s", "slack": [{"webhook_url": fake_slack.url + "/services/T0/B0/gone"}]}],
        "routes": {"receiver": "s"},
    }
    async with running(settings_from(cfg, sqlite_url)) as (client, rt):
        await post(client, fixture_bytes("02-info-firing-unicode.json"))

        async def dead() -> bool:
            return any(r["state"] == "dead" for r in await delivery_rows(rt))

        await wait_for(dead, timeout=10)
        row = (await delivery_rows(rt))[0]
        assert "404" in row["last_error"] and "/services/" not in row["last_error"]


async def test_gives_up_after_max_attempts(sqlite_url: str, fake_telegram: FakeTelegram) -> None:
    fake_telegram.down = True
    cfg = tg_config(fake_telegram)
    cfg["delivery"].update(max_attempts=3, backoff_initial="50ms", backoff_max="100ms")
    async with running(settings_from(cfg, sqlite_url)) as (client, rt):
        await post(client, fixture_bytes("02-info-firing-unicode.json"))

        async def dead() -> bool:
            return any(r["state"] == "dead" for r in await delivery_rows(rt))

        await wait_for(dead, timeout=10)
        row = (await delivery_rows(rt))[0]
        assert row["attempts"] == 3 and "max_attempts" in row["last_error"]
        assert len([r for r in fake_telegram.requests if r["method"] == "sendMessage"]) == 3
        await asyncio.sleep(0.3)
        assert len([r for r in fake_telegram.requests if r["method"] == "sendMessage"]) == 3
