"""Several notifier replicas on one PostgreSQL, behind an Alertmanager cluster: the same guarantees across
processes. Real PostgreSQL, real processes, real Alertmanager 0.25 peers."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fakes.smtp import SMTPServer, mail_text
from tests.fakes.telegram import FakeTelegram, ThreadedFake
from tests.helpers import TOKEN, ServerProcess, binary, free_port, make_group, wait_http

CHAT = -1001234567890
BOT = "123456:replica-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out: {what}")


@pytest.fixture
def tg() -> Iterator[ThreadedFake]:
    fake = ThreadedFake(FakeTelegram(token=BOT, chats={CHAT}, group_limit_per_minute=20))
    yield fake
    fake.stop()


def replicas(tmp_path: Path, url: str, n: int, tg: ThreadedFake, **extra: Any) -> list[ServerProcess]:
    out = []
    for i in range(n):
        port = free_port()
        cfg = {
            "server": {"listen": f"127.0.0.1:{port}", "auth": {"bearer_token": TOKEN}},
            "storage": {"url": url},
            "delivery": {"poll_interval": "100ms", "lease": "5s", "backoff_initial": "200ms"},
            "storm": {"threshold": 1000},
            "receivers": [{"name": "tg", "telegram": [{"bot_token": BOT, "chat_id": CHAT, "api_url": tg.fake.url}]}],
            "routes": {"receiver": "tg"},
            **extra,
        }
        d = tmp_path / f"replica{i}"
        d.mkdir()
        (d / "notifier.yml").write_text(yaml.safe_dump(cfg))
        out.append(ServerProcess(d / "notifier.yml", port))
    for r in out:
        r.start()
    return out


def group_names(tg: ThreadedFake) -> list[str]:
    return [t.split("\n")[0] for t in tg.texts()]


@pytest.mark.slow
def test_two_replicas_behind_two_clustered_alertmanagers_send_one_message_per_change(
    tmp_path: Path, pg_url: str, tg: ThreadedFake
) -> None:
    exe = binary("prometheus-alertmanager")
    notifiers = replicas(tmp_path, pg_url, 2, tg)
    cluster = [free_port(), free_port()]
    ams: list[Any] = []
    urls = []
    try:
        for i, n in enumerate(notifiers):
            cfg = {
                "route": {
                    "receiver": "notifier",
                    "group_by": ["alertname"],
                    "group_wait": "1s",
                    "group_interval": "2s",
                    "repeat_interval": "1h",
                },
                "receivers": [
                    {
                        "name": "notifier",
                        "webhook_configs": [
                            {
                                "url": f"{n.url}/webhook/alertmanager",
                                "send_resolved": True,
                                "http_config": {"authorization": {"type": "Bearer", "credentials": TOKEN}},
                            }
                        ],
                    }
                ],
            }
            path = tmp_path / f"am{i}.yml"
            path.write_text(yaml.safe_dump(cfg))
            port = free_port()
            import subprocess

            ams.append(
                subprocess.Popen(
                    [
                        exe,
                        f"--config.file={path}",
                        f"--storage.path={tmp_path / f'am{i}'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        f"--cluster.listen-address=127.0.0.1:{cluster[i]}",
                        f"--cluster.peer=127.0.0.1:{cluster[1 - i]}",
                        "--cluster.peer-timeout=2s",
                        "--cluster.gossip-interval=100ms",
                        "--cluster.pushpull-interval=1s",
                    ],
                    stdout=(tmp_path / f"am{i}.log").open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for u in urls:
            wait_http(f"{u}/-/ready")
        time.sleep(2)  # the peers find each other
        now = datetime.now(UTC)
        groups = [f"Burst{g}" for g in range(6)]
        alerts = [
            {
                "labels": {"alertname": name, "severity": "warning", "bot": f"b{i}"},
                "annotations": {"summary": name},
                "startsAt": now.isoformat(),
                "endsAt": (now + timedelta(hours=1)).isoformat(),
            }
            for name in groups
            for i in range(3)
        ]
        for u in urls:  # Prometheus sends every alert to every Alertmanager
            httpx.post(f"{u}/api/v2/alerts", json=alerts, timeout=10).raise_for_status()
        wait(lambda: len(tg.fake.sent) >= len(groups), 60, "one firing message per group")
        end = datetime.now(UTC)
        resolved = [{**a, "endsAt": end.isoformat()} for a in alerts]
        for u in urls:
            httpx.post(f"{u}/api/v2/alerts", json=resolved, timeout=10).raise_for_status()
        wait(lambda: len(tg.fake.sent) >= 2 * len(groups), 60, "one resolved message per group")
        time.sleep(6)  # whatever else either peer would still send
        heads = group_names(tg)
        for name in groups:
            assert sum(1 for h in heads if name in h and "WARNING" in h) == 1, (name, heads)
            assert sum(1 for h in heads if name in h and "RESOLVED" in h) == 1, (name, heads)
        assert len(heads) == 2 * len(groups)
        served = [httpx.get(f"{n.url}/metrics").text for n in notifiers]
        assert all('notifier_webhooks_received_total{outcome="accepted"}' in m for m in served)
    finally:
        for p in ams:
            p.terminate()
            p.wait(10)
        for n in notifiers:
            n.stop()


@pytest.mark.slow
def test_kill_9_of_a_replica_mid_burst_loses_nothing(tmp_path: Path, pg_url: str, tg: ThreadedFake) -> None:
    a, b = replicas(tmp_path, pg_url, 2, tg)
    tg.fake.delay = 0.2
    accepted = []
    try:
        for i in range(16):
            target = b if i >= 10 or i % 2 else a  # alternate, then only the survivor once the other is killed
            body = json.dumps(make_group(1, name=f"Kill{i:02d}", group_key=f'{{}}:{{k="{i}"}}'))
            r = httpx.post(f"{target.url}/webhook/alertmanager", content=body, headers=AUTH, timeout=10)
            assert r.status_code == 202
            accepted.append(f"Kill{i:02d}")
            if i == 9:
                a.kill9()  # mid-burst, with messages leased to it and not yet sent
        wait(
            lambda: all(any(n in h for h in group_names(tg)) for n in accepted),
            90,
            "every accepted notification delivered by the surviving replica",
        )
        heads = group_names(tg)
        duplicates = sum(max(0, sum(1 for h in heads if n in h) - 1) for n in accepted)
        print(f"\nkill -9 mid-burst: {len(accepted)} accepted, {len(heads)} messages, {duplicates} duplicates")
        assert duplicates <= 1  # at most the one message that was on the wire when the replica died
    finally:
        a.stop()
        b.stop()


@pytest.mark.slow
def test_a_send_that_outlasts_the_lease_is_not_taken_over_and_sent_twice(
    tmp_path: Path, pg_url: str, tg: ThreadedFake
) -> None:
    """The Bot API takes 3 s per message and the lease is 2 s: the replica sending renews its lease before it
    sends, so the other one, polling the outbox, does not take the message over and send it again."""
    delivery = {"poll_interval": "100ms", "lease": "2s", "backoff_initial": "200ms"}
    a, b = replicas(tmp_path, pg_url, 2, tg, delivery=delivery)
    tg.fake.delay = 3.0
    try:
        body = json.dumps(make_group(1, name="SlowProvider"))
        assert httpx.post(f"{a.url}/webhook/alertmanager", content=body, headers=AUTH, timeout=10).status_code == 202
        wait(lambda: len(tg.fake.sent) >= 1, 30, "the message delivered")
        time.sleep(5)  # a takeover would come after 2 s, and its send 3 s later
        assert len(tg.fake.sent) == 1, group_names(tg)  # sent once, by the replica that took it first
    finally:
        a.stop()
        b.stop()


@pytest.mark.slow
def test_four_replicas_never_exceed_20_messages_a_minute_into_one_group(
    tmp_path: Path, pg_url: str, tg: ThreadedFake
) -> None:
    nodes = replicas(tmp_path, pg_url, 4, tg)
    try:
        for i, target in zip(range(28), itertools.cycle(nodes), strict=False):
            body = json.dumps(make_group(1, name=f"Four{i:02d}", group_key=f'{{}}:{{f="{i}"}}'))
            assert httpx.post(f"{target.url}/webhook/alertmanager", content=body, headers=AUTH).status_code == 202
        time.sleep(70)  # past the first minute: the limit must have held back the rest
        times = sorted(s.at for s in tg.fake.sent)
        most = max(sum(1 for t in times if s <= t < s + 60) for s in times)
        print(f"\n4 replicas: {len(times)} messages in 70 s, at most {most} in any minute, {tg.fake.rate_limited} 429s")
        assert most <= 20 and len(times) >= 20
        assert tg.fake.rate_limited == 0
    finally:
        for n in nodes:
            n.stop()


@pytest.mark.slow
def test_one_digest_per_tick_with_three_replicas(tmp_path: Path, pg_url: str, tg: ThreadedFake) -> None:
    smtp = SMTPServer().start()
    try:
        mail = {
            "host": "127.0.0.1",
            "port": smtp.port,
            "tls": "none",
            "from": "a@example.com",
            "to": ["desk@example.com"],
        }
        nodes = replicas(
            tmp_path,
            pg_url,
            3,
            tg,
            receivers=[{"name": "mail", "email": [mail], "digest": {"schedule": "every 1m", "timezone": "UTC"}}],
            routes={"receiver": "mail", "digest": True},
        )
        try:
            body = json.dumps(make_group(2, name="DigestMe"))
            assert httpx.post(f"{nodes[0].url}/webhook/alertmanager", content=body, headers=AUTH).status_code == 202
            now = time.time()
            next_tick = (now // 60 + 1) * 60
            wait(lambda: len(smtp.messages) >= 1, next_tick - now + 40, "the digest")
            time.sleep(20)  # the other replicas' schedulers have run for this tick too
            assert len(smtp.messages) == 1
            assert "DigestMe" in mail_text(smtp.messages[0].message, "plain")
        finally:
            for n in nodes:
                n.stop()
    finally:
        smtp.stop()


def _poller(url: str) -> str | None:
    """The owner of the Telegram poller's lease, if it holds one now."""
    import asyncio

    import asyncpg

    async def read() -> str | None:
        conn = await asyncpg.connect(url)
        try:
            row = await conn.fetchrow(
                "SELECT owner FROM leases WHERE name LIKE 'telegram-updates:%' AND until > extract(epoch from now())"
            )
            return str(row["owner"]) if row else None
        finally:
            await conn.close()

    return asyncio.run(read())


def test_one_replica_polls_telegram_and_another_takes_over_when_it_dies(
    tmp_path: Path, pg_url: str, tg: ThreadedFake
) -> None:
    """Telegram lets one consumer poll a bot: with two replicas one polls (a lease in the store, never a 409), and
    when it is killed the other takes over within the lease time and answers the chat."""
    actions = {
        "alertmanager": {"urls": ["http://127.0.0.1:9"]},
        "actions": {"allowed": {"telegram": [7001]}, "telegram": {"poll_timeout": "1s", "lease": "10s"}},
    }
    notifiers = replicas(tmp_path, pg_url, 2, tg, **actions)
    try:
        wait(lambda: _poller(pg_url) is not None, 20, "a replica polls")
        owner = _poller(pg_url)
        assert owner is not None
        first = next(n for n in notifiers if owner.endswith(f":{n.port}"))
        other = next(n for n in notifiers if n is not first)
        time.sleep(3)  # both replicas running side by side for a while
        assert _poller(pg_url) == owner
        assert tg.fake.conflicts == 0

        first.kill9()
        killed_at = time.monotonic()
        wait(lambda: (_poller(pg_url) or "").endswith(f":{other.port}"), 20, "the other replica polls")
        took = time.monotonic() - killed_at
        assert took <= 10 + 5, f"took over after {took:.1f}s"
        tg.loop.call_soon_threadsafe(lambda: tg.fake.say("/help", chat_id=CHAT))
        wait(lambda: any(t.startswith("/alerts: the firing") for t in tg.texts()), 15, "the answer to /help")
        assert tg.fake.conflicts == 0
    finally:
        for n in notifiers:
            n.stop()
