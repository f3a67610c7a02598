"""Two real Alertmanager 0.25 peers in a gossip cluster, each posting to its own `notifier serve` replica on one
PostgreSQL, alerts firing and resolving as Prometheus would post them: every group's last message in the chat is
the group's true state at the end. Peers send the same group on their own timers (the second after
peer_timeout), so late copies of older states arrive in every run of this kind; they must never win."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.telegram import FakeTelegram, ThreadedFake
from tests.helpers import TOKEN, ServerProcess, free_port

pytestmark = pytest.mark.slow
GROUPS, ALERTS = 16, 2
CHATS = [1001, 1002, 1003, 1004]  # private chats: one message a second each, no per-minute group limit
FLIP_SECONDS = 40.0
SEED = 20261206


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def am_config(tmp_path: Path, i: int, notifier_port: int) -> Path:
    path = tmp_path / f"am-{i}.yml"
    path.write_text(
        "route:\n  receiver: notifier\n  group_by: [alertname]\n  group_wait: 3s\n  group_interval: 4s\n"
        "  repeat_interval: 1h\n"
        "receivers:\n  - name: notifier\n    webhook_configs:\n"
        f"      - url: http://127.0.0.1:{notifier_port}/webhook/alertmanager\n"
        "        send_resolved: true\n        max_alerts: 0\n"
        f"        http_config: {{authorization: {{type: Bearer, credentials: {TOKEN}}}}}\n"
    )
    return path


def notifier_config(tmp_path: Path, i: int, port: int, pg_url: str, tg: FakeTelegram) -> Path:
    receivers = [
        {"name": f"chat{c}", "telegram": [{"bot_token": tg.token, "chat_id": chat, "api_url": tg.url}]}
        for c, chat in enumerate(CHATS)
    ]
    config = {
        "server": {"listen": f"127.0.0.1:{port}", "auth": {"bearer_token": TOKEN}},
        "storage": {"url": pg_url},
        "delivery": {"poll_interval": "100ms", "backoff_initial": "200ms", "backoff_max": "2s", "lease": "10s"},
        "storm": {"threshold": 1000},
        "receivers": receivers,
        "routes": {
            "receiver": "chat0",
            "routes": [{"matchers": [f'chat="{c}"'], "receivers": [f"chat{c}"]} for c in range(len(CHATS))],
        },
    }
    path = tmp_path / f"notifier-{i}.yml"
    path.write_text(json.dumps(config))
    return path


def positions(peers: list[str]) -> list[str]:
    """The peers in the order in which they send (Alertmanager's position: by peer name)."""
    names = {}
    for url in peers:
        status = httpx.get(f"{url}/api/v2/status", timeout=5).json()["cluster"]
        names[status["name"]] = url
        assert len(status["peers"]) == len(peers), status  # the cluster has formed
    return [names[n] for n in sorted(names)]


class Generator:
    """Alerts posted to the peers as Prometheus posts them: firing with an end in the future, resolved with an end
    now, fired again with a new start. Each group is created on the peer that sends second a little earlier than
    on the one that sends first (a slow network, a peer restarted): their group timers then run that far apart,
    and a change that reaches the first peer's flush but came after the second peer's is the window in which the
    second peer sends a stale copy after the first sent the newer state (the lag stays under group_wait, or the
    later peer would flush at once, and under peer_timeout). An anchor alert keeps every group alive (an empty
    group is dropped, and a new one would start on both peers at once) until the end."""

    LAG = 1.5

    def __init__(self, peers: list[str]) -> None:
        self.peers = positions(peers)
        self.starts: dict[tuple[int, str], float] = {}
        self.firing: dict[tuple[int, str], bool] = {}
        self.client = httpx.Client(timeout=5)

    def labels(self, g: int, bot: str) -> dict[str, str]:
        return {"alertname": f"Flip{g:02d}", "severity": "warning", "bot": bot, "chat": str(g % len(CHATS))}

    def post(self, alerts: list[dict[str, Any]], lag: float = 0.0) -> None:
        """To every peer, the last in the sending order first, the others `lag` seconds later."""
        for i, peer in enumerate(reversed(self.peers)):
            if i and lag:
                time.sleep(lag)
            r = self.client.post(f"{peer}/api/v2/alerts", json=alerts)
            assert r.status_code == 200, r.text

    def fire(self, g: int, bot: str) -> dict[str, Any]:
        now = time.time()
        self.starts[(g, bot)] = now
        self.firing[(g, bot)] = True
        return {"labels": self.labels(g, bot), "startsAt": iso(now), "endsAt": iso(now + 3600)}

    def resolve(self, g: int, bot: str) -> dict[str, Any]:
        now = time.time()
        self.firing[(g, bot)] = False
        return {"labels": self.labels(g, bot), "startsAt": iso(self.starts[(g, bot)]), "endsAt": iso(now)}


@pytest.fixture
def telegram() -> Iterator[ThreadedFake]:
    fake = ThreadedFake(FakeTelegram(chats=set(CHATS)))
    yield fake
    fake.stop()


def last_messages(tg: FakeTelegram) -> dict[str, str]:
    """Flip name -> the text of the last message that told that group."""
    from tests.fakes.telegram import check_html

    last: dict[str, str] = {}
    for sent in list(tg.sent):
        text = check_html(sent.text)
        for g in range(GROUPS):
            if f"Flip{g:02d}" in text.split("\n")[0]:
                last[f"Flip{g:02d}"] = text
    return last


def test_two_peers_each_posting_to_its_own_replica_end_on_the_truth(
    tmp_path: Path,
    pg_url: str,
    telegram: ThreadedFake,
    alertmanager_cluster: Callable[..., list[str]],
) -> None:
    ports = [free_port(), free_port()]
    replicas = [
        ServerProcess(notifier_config(tmp_path, i, port, pg_url, telegram.fake), port) for i, port in enumerate(ports)
    ]
    replicas[0].start()
    replicas[1].start()
    try:
        peers = alertmanager_cluster([am_config(tmp_path, i, port) for i, port in enumerate(ports)], peer_timeout="2s")
        gen = Generator(peers)
        rnd = random.Random(SEED)
        bots = [f"bot{a}" for a in range(ALERTS)]
        gen.post([gen.fire(g, b) for g in range(GROUPS) for b in ["anchor", *bots]], lag=Generator.LAG)
        deadline = time.monotonic() + FLIP_SECONDS
        while time.monotonic() < deadline:
            time.sleep(rnd.uniform(0.2, 1.2))
            changed = []
            for g, b in rnd.sample([(g, b) for g in range(GROUPS) for b in bots], 4):
                changed.append(gen.resolve(g, b) if gen.firing[(g, b)] else gen.fire(g, b))
            gen.post(changed)
        # The end, as in the chaos run: in every group one more alert fires and a second later everything
        # resolves; the groups one after the other, across more than a group_interval. Where the second peer
        # flushes between the two, it sends a state the first peer never sent (the late alert firing) after the
        # first peer sent the resolution: a stale copy the redelivery keys cannot recognise. The truth: all
        # resolved.
        events = sorted(
            [(0.3 * g, "fire", g) for g in range(GROUPS)] + [(0.3 * g + 1.0, "resolve", g) for g in range(GROUPS)]
        )
        start = time.monotonic()
        for at, what, g in events:
            time.sleep(max(0.0, start + at - time.monotonic()))
            if what == "fire":
                gen.post([gen.fire(g, "late")])
            else:
                gen.post([gen.resolve(g, b) for (group, b), on in list(gen.firing.items()) if group == g and on])
        # the peers flush every group_interval and wait their turn; then the outbox drains
        quiet_since, seen = time.monotonic(), len(telegram.fake.sent)
        while time.monotonic() - quiet_since < 12:
            time.sleep(0.5)
            if len(telegram.fake.sent) != seen:
                quiet_since, seen = time.monotonic(), len(telegram.fake.sent)
        last = last_messages(telegram.fake)
        wrong = []
        for g in range(GROUPS):
            name = f"Flip{g:02d}"
            firing = {b for (group, b), on in gen.firing.items() if group == g and on}
            text = last.get(name, "")
            resolved_shown = text.startswith("✅ RESOLVED")
            if not firing and not resolved_shown:
                wrong.append((name, "resolved", text))
            if firing and resolved_shown:
                wrong.append((name, f"firing {sorted(firing)}", text))
        logs = "\n".join(r.log.read_text()[-2000:] for r in replicas)
        assert not wrong, (wrong, logs)
        stale = sum(
            float(line.split()[-1])
            for r in replicas
            for line in httpx.get(f"{r.url}/metrics").text.splitlines()
            if line.startswith("notifier_stale_alerts_total")
        )
        # the run did make stale copies (the window above), and the replicas recognised them
        assert stale > 0, logs
    finally:
        for r in replicas:
            r.stop()
