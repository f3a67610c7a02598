"""Chaos soak with an exact ledger (issue: proven over time).

Real parts: two Alertmanager 0.25 peers in a gossip cluster on loopback, each posting every notification to all
three `notifier serve` replicas (so the HA copies are real, and a dead replica is covered by the others); the
replicas share a fresh PostgreSQL database reached through a TCP proxy that the soak can cut; four Telegram
receivers (one chat each) on the strict fake Bot API. An alert generator posts to both peers' `/api/v2/alerts` every
two seconds, as Prometheus does, with groups that fire and resolve on a seeded schedule, and a Watchdog.

Faults and events, on a schedule drawn from `--seed` and printed: `kill -9` of a replica and its restart,
PostgreSQL cut (every connection closed, new ones refused: a fast restart, and an outage of 60 s), an Alertmanager
peer killed and restarted, the Bot API answering 429 with retry_after, 5xx, taking 10 s per call, and taking
messages but resetting the connection before its answer; Slack 429, SMTP 451; a storm (48 new groups at once); quiet
hours of team2 that open and close during the run (runs of 4 minutes or more); and someone acknowledging team3's
groups from the chat (Ack pressed, heard by the replica that polls the Bot API) while they escalate.

The ledger: the generator records every change of every alert. Each receiver's template prints one line per alert
(`SOAK <alert> <status>`), so what each chat was told is read back from the fake. A change is told when a message
at or after it shows it; **lost** is a change never told; **went back** is a message showing an alert firing after a
message had shown it resolved, with no new episode of it begun (a late copy that took a group back); a
**duplicate** is a message repeating the previous message of its group word for word, legitimate only when a
replica was killed while it could have been on the wire, or the provider took it and the connection was reset
before its answer. It exits non-zero on any loss, any went back, any unexplained duplicate, a group whose last
message is not its final state, an escalation page missed, early, or sent while the group was acknowledged, or a
press left unanswered.

    make soak                                  # 5 minutes
    .venv/bin/python bench/soak.py --minutes 30 --seed 7 --report soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.push import FakeNtfy  # noqa: E402
from tests.fakes.slack import FakeSlack  # noqa: E402
from tests.fakes.smtp import SMTPServer, mail_text  # noqa: E402
from tests.fakes.tcp import TcpProxy  # noqa: E402
from tests.fakes.telegram import FakeTelegram, ThreadedFake  # noqa: E402
from tests.helpers import PG_ADMIN_URL, free_port, wait_http  # noqa: E402

TOKEN = "soak-bearer-token"
BOT = "123456:soak-token"
HUGE = 10_000  # alerts of the one huge group
LISTED = 100  # alerts a message spells out (message.max_alerts); the rest are counted ("+N more alerts")
PRESSER = 7001  # the Telegram user who acknowledges team3's groups during the run
TEAMS = 4  # team0: Telegram; team1: Slack (bot token, threads); team2: email; team3: Telegram, escalated to ntfy
CHATS = {"team0": 4201, "team3": 4204}  # private chats: one message a second each
SLACK_CHANNEL = "C0SOAK1"
ESCALATE_AFTER = (
    40.0  # team3's step: ntfy when a group is not acknowledged (nor resolved) this long after its first send
)
EVAL = 2.0  # seconds between the generator's posts (Prometheus' evaluation interval)
RECORD_WITHIN = 5.0  # seconds from a provider's answer by which a live replica on a live store has recorded a send
SOAK_LINE = re.compile(r"SOAK (\S+) (firing|resolved)")
SOAK_ALERT = re.compile(r"g\d+a\d+")  # the generator's alerts; others (WatchdogMissing) are not in the ledger
# A storm summary tells one line per group (its alert name, firing while any alert of it fires), not per alert.
SOAK_GROUP = re.compile(r"Soak(\d+)\b")
TEMPLATE = '{% macro alert(a, detail) -%}\nSOAK {{ a.labels.get("soak", a.name) }} {{ a.status }}\n{% endmacro %}'
EMAIL_TEMPLATE = (
    '{{ title }}\n{% for a in alerts %}SOAK {{ a.labels.get("soak", a.name) }} {{ a.status }}\n{% endfor %}'
)


def hhmm(t: float) -> str:
    """A quiet-hours bound: the time of day of `t` in UTC (a window that ends at midnight ends at 24:00)."""
    text = datetime.fromtimestamp(t, UTC).strftime("%H:%M")
    return "24:00" if text == "00:00" else text


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Providers:
    """The fake providers, all served from one event loop in a thread."""

    tg: ThreadedFake
    slack: FakeSlack
    ntfy: FakeNtfy
    smtp: SMTPServer

    @staticmethod
    def start() -> Providers:
        tg = ThreadedFake(FakeTelegram(token=BOT, chats=set(CHATS.values())))
        slack = FakeSlack(channels={SLACK_CHANNEL: SLACK_CHANNEL})
        ntfy = FakeNtfy()
        for fake in (slack, ntfy):
            asyncio.run_coroutine_threadsafe(fake.start(), tg.loop).result(10)
        return Providers(tg, slack, ntfy, SMTPServer().start())

    def on_loop(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.tg.loop).result(10)

    def stop(self) -> None:
        self.on_loop(self.slack.stop())
        self.on_loop(self.ntfy.stop())
        self.tg.stop()
        self.smtp.stop()


# -- the parts --------------------------------------------------------------------------------------------------------


class Replica:
    """One `notifier serve` process; its RSS and the 503s it answered are read before it dies and at the end."""

    def __init__(
        self,
        i: int,
        workdir: Path,
        pg_url: str,
        fakes: Providers,
        am_urls: list[str],
        quiet: tuple[float, float] | None,
    ) -> None:
        self.i = i
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"replica-{i}.log"
        self.config = workdir / f"replica-{i}.yml"
        tg_url = fakes.tg.fake.url
        receivers: list[dict[str, Any]] = [
            {
                "name": team,
                "telegram": [{"bot_token": BOT, "chat_id": chat, "api_url": tg_url}],
                "templates": {"telegram": {"inline": TEMPLATE}},
            }
            for team, chat in CHATS.items()
        ]
        slack = {"bot_token": fakes.slack.token, "channel": SLACK_CHANNEL, "api_url": fakes.slack.api_url}
        receivers.append({"name": "team1", "slack": [slack], "templates": {"slack": {"inline": TEMPLATE}}})
        mail = {"host": "127.0.0.1", "port": fakes.smtp.port, "tls": "none", "from": "soak@example.com"}
        mail["to"] = ["team2@example.com"]
        mail["rate_per_minute"] = 120  # the load, not the provider's limit, is what the soak measures
        receivers.append({"name": "team2", "email": [mail], "templates": {"email_text": {"inline": EMAIL_TEMPLATE}}})
        ntfy = {"server": fakes.ntfy.url, "topic": "trading-oncall", "token": fakes.ntfy.token}
        receivers.append({"name": "loud", "ntfy": [ntfy]})
        routes: list[dict[str, Any]] = [
            {"matchers": [f'team="team{k}"'], "receivers": [f"team{k}"], "repeat_interval": "24h"} for k in range(TEAMS)
        ]
        routes[3]["escalation"] = [{"after": f"{ESCALATE_AFTER:.0f}s", "receivers": ["loud"]}]
        config: dict[str, Any] = {
            "server": {"listen": f"127.0.0.1:{self.port}", "auth": {"bearer_token": TOKEN}},
            "storage": {"url": pg_url},
            "delivery": {"poll_interval": "200ms", "backoff_initial": "500ms", "backoff_max": "5s", "lease": "15s"},
            "receivers": receivers,
            "routes": {
                "receiver": "team0",
                "repeat_interval": "24h",
                "routes": routes,
            },
            "watchdog": {"alertname": "Watchdog", "expect_every": "30s", "receivers": ["team0"]},
            # presses during the run: someone acknowledges team3's groups from the chat (one replica polls)
            "actions": {"allowed": {"telegram": [PRESSER]}, "telegram": {"poll_timeout": "5s", "lease": "15s"}},
            "alertmanager": {"urls": am_urls},
        }
        if quiet is not None:
            config["quiet_hours"] = {
                "soak": {"location": "UTC", "times": [{"start": hhmm(quiet[0]), "end": hhmm(quiet[1])}]}
            }
            routes[2]["quiet_hours"] = {"schedule": "soak", "mode": "defer", "bypass_severities": []}
        self.config.write_text(json.dumps(config))
        self.proc: subprocess.Popen[bytes] | None = None
        self.rss: list[tuple[float, float]] = []  # (rss MiB at ready, rss MiB at its end) per process life
        self.unavailable = 0  # webhooks answered 503 (the store unreachable), summed over its lives
        self._rss_start = 0.0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "notifier", "serve", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(self.config.parent),
                env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1"},
            )

    def wait_ready(self) -> None:
        wait_http(f"{self.url}/readyz", timeout=90)
        self._rss_start = self._rss_mib()

    def _rss_mib(self) -> float:
        assert self.proc is not None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _read_counters(self) -> None:
        try:
            text = httpx.get(f"{self.url}/metrics", timeout=5).text
        except httpx.HTTPError:
            return
        m = re.search(r'notifier_webhooks_received_total\{outcome="unavailable"\} ([0-9.e+]+)', text)
        self.unavailable += int(float(m.group(1))) if m else 0
        self.rss.append((self._rss_start, self._rss_mib()))

    def kill9(self) -> None:
        self._read_counters()
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._read_counters()
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Peer:
    """One Alertmanager of the cluster; killed and started again on the same ports and data folder."""

    def __init__(self, i: int, workdir: Path, ports: list[tuple[int, int]], replicas: list[Replica]) -> None:
        self.i = i
        self.web, self.mesh = ports[i]
        self.others = [m for j, (_w, m) in enumerate(ports) if j != i]
        self.url = f"http://127.0.0.1:{self.web}"
        self.data = workdir / f"am-{i}"
        self.data.mkdir()
        self.config = workdir / f"am-{i}.yml"
        hooks = [
            {
                "url": f"{r.url}/webhook/alertmanager",
                "send_resolved": True,
                "http_config": {"authorization": {"credentials": TOKEN}},
            }
            for r in replicas
        ]
        route: dict[str, Any] = {
            "receiver": "notifier",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "2s",
            "repeat_interval": "24h",
            # the Watchdog is sent again and again, as monitoring/alertmanager routes it
            "routes": [{"matchers": ['alertname="Watchdog"'], "receiver": "notifier", "repeat_interval": "10s"}],
        }
        self.config.write_text(
            json.dumps({"route": route, "receivers": [{"name": "notifier", "webhook_configs": hooks}]})
        )
        self.log = workdir / f"am-{i}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.exe = shutil.which("prometheus-alertmanager") or "prometheus-alertmanager"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    self.exe,
                    f"--config.file={self.config}",
                    f"--storage.path={self.data}",
                    f"--web.listen-address=127.0.0.1:{self.web}",
                    f"--cluster.listen-address=127.0.0.1:{self.mesh}",
                    f"--cluster.advertise-address=127.0.0.1:{self.mesh}",
                    "--cluster.peer-timeout=2s",
                    "--cluster.settle-timeout=5s",
                    "--cluster.gossip-interval=100ms",
                    "--cluster.pushpull-interval=5s",
                    *[f"--cluster.peer=127.0.0.1:{m}" for m in self.others],
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        wait_http(f"{self.url}/-/ready", timeout=60)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


# -- the load ---------------------------------------------------------------------------------------------------------


@dataclass
class Change:
    alert: str
    status: str  # firing | resolved
    at: float
    episode: int


@dataclass
class Generator:
    """Groups of 1 to 4 alerts; each alert fires and resolves with durations drawn from the seed (long enough that
    Alertmanager sees every state: a group flushes every two seconds, a late peer waits two more)."""

    rng: random.Random
    groups: int
    hold: tuple[float, float]
    peers: list[Peer]
    changes: list[Change] = field(default_factory=list)
    errors: int = 0
    _alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # alert -> labels, state, next change
    _stop_firing_at: float = float("inf")

    def setup(self, now: float) -> None:
        for g in range(self.groups):
            for a in range(self.rng.randint(1, 4)):
                name = f"g{g}a{a}"
                labels = {"alertname": f"Soak{g}", "soak": name, "team": f"team{g % TEAMS}", "severity": "warning"}
                first = now + self.rng.uniform(0, self.hold[1])
                self._alerts[name] = {"labels": labels, "firing": False, "since": 0.0, "next": first, "episode": 0}

    def burst(self, now: float, n: int) -> None:
        """A storm: `n` new groups of one alert each fire at the next tick, all at once, and resolve once."""
        first = 1 + max(int(name[1:].split("a")[0]) for name in self._alerts)
        for g in range(first, first + n):
            self._once(g, 0, f"team{g % TEAMS}", now, None)

    def huge(self, now: float, n: int, hold: float) -> None:
        """One group of `n` alerts (team0's) that fire together at the next tick and resolve together `hold`
        seconds later, once."""
        g = 1 + max(int(name[1:].split("a")[0]) for name in self._alerts)
        g += -g % TEAMS  # team0
        for a in range(n):
            self._once(g, a, "team0", now, hold)

    def _once(self, g: int, a: int, team: str, now: float, hold: float | None) -> None:
        """Alert `a` of group `g`: it fires at the next tick and resolves once, after `hold` (or a drawn time)."""
        labels = {"alertname": f"Soak{g}", "soak": f"g{g}a{a}", "team": team, "severity": "warning"}
        self._alerts[f"g{g}a{a}"] = {
            "labels": labels,
            "firing": False,
            "since": 0.0,
            "next": now,
            "episode": 0,
            "once": True,
            "hold": hold,
        }

    def resolve_all_at(self, t: float) -> None:
        self._stop_firing_at = t

    def tick(self, now: float) -> None:
        for name, s in self._alerts.items():
            if now >= s["next"]:
                if s["firing"]:
                    s["firing"] = False
                    self.changes.append(Change(name, "resolved", now, s["episode"]))
                    s["since"] = now
                    s["next"] = float("inf") if s.get("once") else now + self.rng.uniform(*self.hold)
                elif now < self._stop_firing_at - self.hold[0]:  # every episode is held at least hold[0]
                    s["firing"] = True
                    s["episode"] += 1
                    self.changes.append(Change(name, "firing", now, s["episode"]))
                    s["since"] = now
                    s["next"] = now + (s.get("hold") or self.rng.uniform(*self.hold))
            if s["firing"] and now >= self._stop_firing_at and now - s["since"] >= self.hold[0]:
                s["firing"] = False
                self.changes.append(Change(name, "resolved", now, s["episode"]))
                s["since"] = now
                s["next"] = float("inf")
        body = [
            {
                "labels": {"alertname": "Watchdog", "severity": "none"},
                "startsAt": iso(now - 1),
                "endsAt": iso(now + 4 * EVAL),
            }
        ]
        for s in self._alerts.values():
            if s["firing"]:
                body.append({"labels": s["labels"], "startsAt": iso(s["since"]), "endsAt": iso(now + 4 * EVAL)})
            elif s["since"] and now - s["since"] < 60:  # Prometheus keeps sending a resolved alert for a while
                body.append({"labels": s["labels"], "startsAt": iso(s["since"] - 1), "endsAt": iso(s["since"])})
        for p in self.peers:
            try:
                httpx.post(f"{p.url}/api/v2/alerts", json=body, timeout=5).raise_for_status()
            except httpx.HTTPError:
                self.errors += 1  # a peer that is down: Prometheus posts to the other one all the same


@dataclass
class Press:
    at: float
    group: str
    query: str  # the callback query's id, to find its answer


@dataclass
class Presser:
    """Someone on call acknowledges team3's groups from the chat: 30 to 90 s after the last press, the Ack button of
    team3's newest message that shows an alert firing and came within the last 20 s (well before the group's
    escalation is due)."""

    rng: random.Random
    tg: ThreadedFake
    acks: list[Press] = field(default_factory=list)
    _next: float = 0.0
    _pressed: set[int] = field(default_factory=set)  # message ids

    def tick(self, now: float) -> None:
        if now < self._next:
            return
        self._next = now + 5  # looked again soon while nothing fits; a while after a press
        for m in reversed(list(self.tg.fake.sent)):
            if now - m.at > 20:
                return
            if m.chat_id != CHATS["team3"] or m.message_id in self._pressed:
                continue
            rows = (m.reply_markup or {}).get("inline_keyboard", [])
            data = next((b["callback_data"] for row in rows for b in row if b.get("text") == "Ack"), None)
            firing = [a for a, st in SOAK_LINE.findall(m.text) if st == "firing" and SOAK_ALERT.fullmatch(a)]
            if data is None or not firing:
                continue

            async def press(message: Any = m, data: str = data) -> str:
                return self.tg.fake.press(message, data, PRESSER, "oncall")

            query = asyncio.run_coroutine_threadsafe(press(), self.tg.loop).result(5)
            self._pressed.add(m.message_id)
            self.acks.append(Press(now, firing[0].split("a")[0], query))
            self._next = now + self.rng.uniform(30, 90)
            return

    def report(self, fake: FakeTelegram) -> dict[str, Any]:
        answered = acknowledged(fake)
        late = [p for p in self.acks if p.query not in answered]
        return {
            "pressed": len(self.acks),
            "acknowledged": len(self.acks) - len(late),
            "unanswered": [f"{p.group} pressed at {p.at:.0f}" for p in late],
        }


def acknowledged(fake: FakeTelegram) -> dict[str, float]:
    """Callback query id -> when the notifier answered it, for the presses it acknowledged."""
    return {
        str(a["id"]): float(a["at"])
        for a in list(fake.callback_answers)
        if str(a.get("text") or "").startswith("Acknowledged")
    }


# -- the faults -------------------------------------------------------------------------------------------------------


@dataclass
class Fault:
    at: float  # seconds after the start
    kind: str
    target: int
    length: float

    def __str__(self) -> str:
        what = {
            "kill_replica": f"kill -9 replica {self.target}, restart after {self.length:.0f}s",
            "pg_restart": f"PostgreSQL cut for {self.length:.0f}s (a fast restart)",
            "pg_down": f"PostgreSQL down for {self.length:.0f}s",
            "kill_peer": f"kill -9 Alertmanager peer {self.target}, restart after {self.length:.0f}s",
            "tg_429": "Bot API: 429 with retry_after 2 for the next 6 calls",
            "tg_5xx": "Bot API: 502 for the next 6 calls",
            "tg_slow": f"Bot API: 10 s per call for {self.length:.0f}s",
            "slack_429": "Slack: 429 with Retry-After 2 for the next 6 calls",
            "smtp_451": "SMTP: 451 for the next 4 messages",
            "tg_reset": "Bot API: the next 3 messages taken, then their connections reset before the answer",
            "storm": f"storm: {self.target} new groups fire at once",
            "huge": f"one group of {self.target} alerts fires, and resolves {self.length:.0f}s later",
            "quiet": f"quiet hours of team2 (email, defer) open for {self.length:.0f}s",
        }[self.kind]
        return f"t+{self.at:5.0f}s  {what}"


def schedule(rng: random.Random, seconds: float, quick: bool) -> list[Fault]:
    """Faults in the first 70 % of the run; the rest lets everything drain."""
    span = seconds * 0.7
    faults: list[Fault] = []
    t = rng.uniform(10, 20)
    while t < span:  # a replica killed every few minutes (quick: two)
        faults.append(Fault(t, "kill_replica", rng.randrange(3), rng.uniform(3, 8)))
        t += rng.uniform(span / 3, span / 2) if quick else rng.uniform(90, 180)
    faults.append(Fault(rng.uniform(0.1, 0.6) * span, "pg_restart", 0, 2))
    faults.append(Fault(rng.uniform(0.2, 0.5) * span, "pg_down", 0, 10 if quick else 60))
    faults.append(Fault(rng.uniform(0.1, 0.7) * span, "kill_peer", rng.randrange(2), 10 if quick else 20))
    for kind in ("tg_429", "tg_5xx", "slack_429", "smtp_451"):
        faults.append(Fault(rng.uniform(0.05, 0.9) * span, kind, 0, 0))
    faults.append(Fault(rng.uniform(0.1, 0.8) * span, "tg_slow", 0, 8 if quick else 30))
    faults.append(Fault(rng.uniform(0.05, 0.9) * span, "tg_reset", 0, 0))
    faults.append(Fault(rng.uniform(0.2, 0.6) * span, "storm", 24 if quick else 48, 0))
    faults.append(Fault(rng.uniform(0.05, 0.25) * span, "huge", 500 if quick else HUGE, 15 if quick else 180))
    return sorted(faults, key=lambda f: f.at)


def quiet_window(start: float, seconds: float) -> tuple[float, float] | None:
    """Quiet hours for team2 that open and close during the run, on whole minutes (a schedule's resolution): from
    about a third of the run, for a tenth of it (at least a minute). None for runs too short to hold one."""
    if seconds < 240:
        return None
    opens = (int(start + seconds / 3) // 60 + 1) * 60
    return float(opens), float(opens + 60 * max(1, round(seconds / 600)))


@dataclass
class Happened:
    """The faults as they happened (wall-clock times), for the ledger's causes and recovery times."""

    start: float
    kills: list[float] = field(default_factory=list)  # a replica killed
    outages: list[tuple[float, float]] = field(default_factory=list)  # PostgreSQL away (from, to)
    ends: list[tuple[str, float]] = field(default_factory=list)  # (fault, when it ended)
    resets: list[float] = field(default_factory=list)  # the fake Bot API took a message, then reset its connection
    quiet: tuple[float, float] | None = None  # team2's quiet hours (from, to)

    def both_away(self, first: float, then: float) -> bool:
        """Both moments fell in one PostgreSQL outage (give or take Alertmanager's flush and retry)."""
        return any(a - 5 <= first and then <= b + 10 for a, b in self.outages)

    def duplicate_cause(self, first: float, again: float) -> str | None:
        """Why a message could legitimately be sent twice (at least once, never lost): its replica was killed
        after the provider took it and before the send was recorded, or the store was away then, so the send
        could not be recorded and the message was taken over when its lease ran out."""
        # the worker records a send within moments of the provider's answer
        if any(first - 1 <= k <= first + RECORD_WITHIN for k in self.kills):
            return "replica killed before it recorded the send"
        if any(a <= first + RECORD_WITHIN and b >= first - 1 for a, b in self.outages):
            return "PostgreSQL away when the send was to be recorded"
        if any(abs(r - first) <= 1 for r in self.resets):
            return "Telegram took it, then the connection was reset before its answer"
        return None

    def deferred(self, team: str, at: float) -> bool:
        """Whether team2's quiet hours held a change made at `at` back (give or take a flush)."""
        return team == "team2" and self.quiet is not None and self.quiet[0] - 5 <= at <= self.quiet[1]


# -- the ledger -------------------------------------------------------------------------------------------------------


@dataclass
class Told:
    at: float
    team: str
    group: str
    text: str
    states: dict[str, str]


def watchdog_alarms(fakes: Providers, start: float) -> list[str]:
    """Messages of the notifier's watchdog (the Watchdog stopped coming, or came back): none is expected, since
    one peer always sends it; but a replica cannot record a sighting while PostgreSQL is away."""
    return [
        f"t+{s.at - start:.0f}s {m.group(1)}"
        for s in list(fakes.tg.fake.sent)
        if (m := re.search(r"SOAK WatchdogMissing (firing|resolved)", s.text))
    ]


def _sent(fakes: Providers) -> list[tuple[float, str, str]]:
    """(when, receiver, text) of every message the providers took."""
    sent: list[tuple[float, str, str]] = [
        (m.at, "team0" if m.chat_id == CHATS["team0"] else "team3", m.text) for m in list(fakes.tg.fake.sent)
    ]
    sent += [(m.at, "team1", m.all_text) for m in list(fakes.slack.posted)]
    sent += [(m.at, "team2", mail_text(m.message, "plain")) for m in list(fakes.smtp.messages)]
    return sent


def told(fakes: Providers) -> list[Told]:
    """Every message of the soak's alerts that a receiver got, from each provider's log."""
    out = []
    for at, team, text in _sent(fakes):
        states = {m.group(1): m.group(2) for m in SOAK_LINE.finditer(text) if SOAK_ALERT.fullmatch(m.group(1))}
        if states:
            group = next(iter(states)).split("a")[0]
            out.append(Told(at, team, group, text, states))
    return out


def summaries(fakes: Providers) -> list[Told]:
    """The storm summaries a receiver got: `states` holds a line per group (g<n> -> firing | resolved)."""
    out = []
    for at, team, text in _sent(fakes):
        groups = {
            f"g{n.group(1)}": m.group(2)
            for m in SOAK_LINE.finditer(text)
            if (n := SOAK_GROUP.fullmatch(m.group(1))) is not None
        }
        if groups:
            out.append(Told(at, team, "storm", text, groups))
    return out


def escalations(
    changes: list[Change], fakes: Providers, messages: list[Told], presses: list[Press] | None = None
) -> dict[str, Any]:
    """team3's escalation to ntfy: a group still firing (any of its alerts) well past the step's `after`, counted
    from its first message (steps count from the first send), must have paged; no page may come before `after`
    has passed since the group began firing; and none while the group is acknowledged (from the notifier's answer
    to the press until an alert of the group fires anew, which ends the acknowledgement)."""
    answered = acknowledged(fakes.tg.fake)
    acked: dict[str, list[float]] = {}  # group -> when its acknowledgements were answered
    for press in presses or []:
        if press.query in answered:
            acked.setdefault(press.group, []).append(answered[press.query])
    fired_at: dict[str, list[float]] = {}
    for c in changes:
        if c.status == "firing":
            fired_at.setdefault(c.alert.split("a")[0], []).append(c.at)
    first_sent = sorted((m.at, m.group) for m in messages if m.team == "team3")
    periods: dict[str, list[tuple[float, float]]] = {}
    firing: dict[str, set[str]] = {}
    opened: dict[str, float] = {}
    for c in sorted(changes, key=lambda c: c.at):
        g = c.alert.split("a")[0]
        if int(g[1:]) % TEAMS != 3:
            continue
        now_firing = firing.setdefault(g, set())
        if c.status == "firing":
            if not now_firing:
                opened[g] = c.at
            now_firing.add(c.alert)
        else:
            now_firing.discard(c.alert)
            if not now_firing and g in opened:
                periods.setdefault(g, []).append((opened.pop(g), c.at))
    pages: list[tuple[float, str]] = []
    said: list[tuple[float, str, str]] = []  # every word ntfy got of a group: (when, group, how), to explain a miss
    for p in list(fakes.ntfy.published):
        if "AlertStorm" in p.title:  # pages that waited behind ntfy's limit, folded into one: a line per group
            for ln in p.message.splitlines():
                if "at once" in ln:
                    continue
                resolved = "resolved" in ln.lower()
                for n in SOAK_GROUP.findall(ln):
                    said.append((p.at, f"g{n}", "a storm summary's line saying resolved" if resolved else "a page"))
                    if not resolved:
                        pages.append((p.at, f"g{n}"))
        elif m := SOAK_GROUP.search(p.title):
            resolved = "RESOLVED" in p.title
            said.append((p.at, f"g{m.group(1)}", "a resolution" if resolved else "a page"))
            if not resolved:
                pages.append((p.at, f"g{m.group(1)}"))
    expected, missed, early, after_ack = 0, [], [], []
    for g, spans in periods.items():
        previous_end = float("-inf")
        for a, b in spans:
            got = [t for t, pg in pages if pg == g and a <= t <= b + 30]
            sent = next((t for t, mg in first_sent if mg == g and t >= a), float("inf"))
            acks = [k for k in acked.get(g, []) if a <= k <= b]
            for k in acks:
                ends = min([t for t in fired_at.get(g, []) if t > k] + [b])
                # a page already on its way when the acknowledgement was stored may still land just after it
                after_ack += [f"{g} paged {t - k:.0f}s after its acknowledgement" for t in got if k + 3 < t < ends]
            # acknowledged: whether it had to page depends on when; the check above is what must hold
            if not acks and b - sent > ESCALATE_AFTER + 30:
                expected += 1
                if not got:
                    near = [f"{how} at {t - b:+.0f}s" for t, sg, how in said if sg == g and a - 60 <= t <= b + 600]
                    missed.append(
                        f"{g} firing for {b - a:.0f}s, {b - sent:.0f}s after its first message; from its end ntfy got "
                        + (", ".join(near) if near else "nothing")
                    )
            if a - previous_end > 60:  # a quick re-fire may still be the chain of the period before
                early += [f"{g} paged {t - a:.0f}s after it began firing" for t in got if t - a < ESCALATE_AFTER - 5]
            previous_end = b
    return {"expected": expected, "pages": len(pages), "missed": missed, "early": early, "after_ack": after_ack}


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


MORE = re.compile(r"\+([\d,]+) more alerts")


def told_huge(
    g: str,
    size: int,
    changes: list[Change],
    messages: list[Told],
    t0: float,
    per_team: dict[str, dict[str, int]],
    latencies: list[float],
    lost: list[str],
    folded: list[str],
    storms: list[Told],
) -> None:
    """A group of more alerts than a message spells out, whose alerts change together: each change is told by a
    message that shows LISTED of them in the new state and counts the rest ("+N more alerts"), or folded into a
    storm summary that tells the group in that state."""
    team = f"team{int(g[1:]) % TEAMS}"
    row = per_team.setdefault(team, {"changes": 0, "told": 0, "folded": 0, "lost": 0})
    moments = sorted({(c.at, c.status) for c in changes if c.alert.split("a")[0] == g})
    for i, (at, status) in enumerate(moments):
        nxt = moments[i + 1][0] if i + 1 < len(moments) else float("inf")
        row["changes"] += 1
        shown = [
            m.at
            for m in messages
            if m.group == g
            and at <= m.at < nxt + 60
            and len(m.states) == LISTED
            and set(m.states.values()) == {status}
            and any(int(n.replace(",", "")) == size - LISTED for n in MORE.findall(m.text))
        ]
        summarised = [x.at for x in storms if x.team == team and x.states.get(g) == status and at <= x.at < nxt + 60]
        if shown:
            row["told"] += 1
            latencies.append(min(shown) - at)
        elif summarised:
            row["folded"] += 1
            folded.append(
                f"the {size} alerts of {g} {status} at t+{at - t0:.0f}s, in the storm summary at "
                f"t+{summarised[0] - t0:.0f}s"
            )
        else:
            row["lost"] += 1
            lost.append(f"the {size} alerts of {g} {status} at t+{at - t0:.0f}s")


def ledger(
    changes: list[Change], messages: list[Told], faults: Happened, storms: list[Told] | None = None
) -> dict[str, Any]:
    t0 = faults.start
    by_alert: dict[str, list[Told]] = {}
    for m in messages:
        for a in m.states:
            by_alert.setdefault(a, []).append(m)
    per_team: dict[str, dict[str, int]] = {}
    lost: list[str] = []
    folded: list[str] = []
    latencies: list[float] = []
    deferred: list[float] = []  # of changes quiet hours held back
    starts: dict[str, list[float]] = {}
    times_of: dict[str, list[float]] = {}  # alert -> when it changed, in order
    members: dict[str, set[str]] = {}  # group -> its alerts
    for c in changes:
        if c.status == "firing":
            starts.setdefault(c.alert, []).append(c.at)
        times_of.setdefault(c.alert, []).append(c.at)
        members.setdefault(c.alert.split("a")[0], set()).add(c.alert)
    huge = {g for g, alerts in members.items() if len(alerts) > LISTED}
    for g in sorted(huge):
        told_huge(g, len(members[g]), changes, messages, t0, per_team, latencies, lost, folded, storms or [])
    for c in changes:
        if c.alert.split("a")[0] in huge:
            continue
        team = f"team{int(c.alert[1:].split('a')[0]) % TEAMS}"
        row = per_team.setdefault(team, {"changes": 0, "told": 0, "folded": 0, "lost": 0})
        row["changes"] += 1
        # told: a message at or after the change that shows it, before the alert's next change
        nxt = next((t for t in times_of[c.alert] if t > c.at), float("inf"))
        after = sorted((m for m in by_alert.get(c.alert, []) if c.at <= m.at < nxt + 60), key=lambda m: m.at)
        # quiet hours hold a change until they end: its group's catch-up may come long after the next change
        held = after
        if faults.quiet is not None and faults.deferred(team, c.at) and nxt < faults.quiet[1]:
            ends = faults.quiet[1] + 60
            held = sorted((m for m in by_alert.get(c.alert, []) if c.at <= m.at < ends), key=lambda m: m.at)
        shown = [m.at for m in after if m.states[c.alert] == c.status]  # later ones belong to a later episode
        group = c.alert.split("a")[0]
        summarised = [s.at for s in storms or [] if s.team == team and group in s.states and c.at <= s.at < nxt + 60]
        if shown:
            row["told"] += 1
            # quiet hours hold a change back until they end, by design: its wait is not the pipeline's latency
            (deferred if faults.deferred(team, c.at) else latencies).append(min(shown) - c.at)
        elif summarised:
            # Taken into a storm summary (more than storm.threshold groups waited for the target at once): it tells
            # each group's state, not each alert's, as configured.
            row["folded"] += 1
            folded.append(
                f"{c.alert} {c.status} at t+{c.at - t0:.0f}s, in the storm summary at t+{summarised[0] - t0:.0f}s"
            )
        elif faults.both_away(c.at, nxt) and not [m for m in after if m.at < nxt]:
            # The alert changed and changed back while no replica could store a notification: Alertmanager
            # retries with its newest state only, and tells nothing when that equals what it last delivered.
            row["folded"] += 1
            folded.append(f"{c.alert} {c.status} at t+{c.at - t0:.0f}s and back at t+{nxt - t0:.0f}s, store away")
        elif held is not after and any(m.at >= nxt for m in held):
            # Quiet hours held it, and it changed again before they ended: the group's one catch-up tells the
            # newest state, as `mode: defer` says.
            row["folded"] += 1
            folded.append(f"{c.alert} {c.status} at t+{c.at - t0:.0f}s, changed again while quiet hours held it")
        elif after and after[0].at >= nxt and after[0].states[c.alert] != c.status:
            # Changed again before any message of its group went out: the message that waited (in the outbox
            # behind a rate limit or a failing provider, or in Alertmanager's retries while no replica could
            # store it) took the newer state. Alertmanager folds the same way within group_interval.
            row["folded"] += 1
            folded.append(
                f"{c.alert} {c.status} at t+{c.at - t0:.0f}s, changed again at t+{nxt - t0:.0f}s, "
                f"first shown {after[0].states[c.alert]} at t+{after[0].at - t0:.0f}s"
            )
        else:
            row["lost"] += 1
            shown_as = [f"t+{m.at - t0:.0f}s {m.states[c.alert]}" for m in by_alert.get(c.alert, [])]
            lost.append(f"{c.alert} {c.status} at t+{c.at - t0:.0f}s (its messages: {', '.join(shown_as) or 'none'})")
    went_back: list[str] = []
    for alert, ms in by_alert.items():
        seen_resolved_at: float | None = None
        for m in sorted(ms, key=lambda m: m.at):
            if m.states[alert] == "resolved":
                seen_resolved_at = m.at
            elif seen_resolved_at is not None:
                if not any(seen_resolved_at - 60 <= s <= m.at for s in starts.get(alert, [])):
                    went_back.append(f"{alert} shown firing at {m.at:.0f} after resolved at {seen_resolved_at:.0f}")
                seen_resolved_at = None
    changed_at: dict[str, list[float]] = {}
    for c in changes:
        changed_at.setdefault(c.alert.split("a")[0], []).append(c.at)
    duplicates: list[str] = []
    unexplained: list[str] = []
    last_by_group: dict[str, Told] = {}
    for m in sorted(messages, key=lambda m: m.at):
        prev = last_by_group.get(m.group)
        # the same text again with no change of its alerts in between (after a fold it may be told again)
        if prev is not None and prev.text == m.text and not any(prev.at < t <= m.at for t in changed_at[m.group]):
            cause = faults.duplicate_cause(prev.at, m.at)
            line = f"group {m.group} at t+{m.at - faults.start:.0f}s (first at t+{prev.at - faults.start:.0f}s)"
            duplicates.append(f"{line}: {cause or 'unexplained'}")
            if cause is None:
                unexplained.append(line)
        last_by_group[m.group] = m
    summarised_last: dict[str, tuple[float, str]] = {}  # group -> its newest storm summary line
    for summary in sorted(storms or [], key=lambda s: s.at):
        summarised_last.update({g: (summary.at, status) for g, status in summary.states.items()})
    stuck = sorted(
        g
        for g, m in last_by_group.items()
        if any(s == "firing" for s in m.states.values())
        and not (g in summarised_last and summarised_last[g][0] > m.at and summarised_last[g][1] == "resolved")
    )
    recovery: dict[str, float] = {}
    times = sorted(m.at for m in messages)
    for kind, end in faults.ends:
        later = [t for t in times if t >= end]
        recovery[f"{kind} ended t+{end - faults.start:.0f}s"] = round(later[0] - end, 1) if later else -1.0
    return {
        "changes": len(changes),
        "told": sum(r["told"] for r in per_team.values()),
        "lost": len(lost),
        "lost_list": lost[:50],
        "folded": len(folded),
        "folded_list": folded[:50],
        "went_back": len(went_back),
        "went_back_list": went_back[:50],
        "duplicates": len(duplicates),
        "duplicates_legitimate": len(duplicates) - len(unexplained),
        "duplicates_list": duplicates[:50],
        "duplicates_unexplained": unexplained[:50],
        "stuck_firing": stuck,
        "per_receiver": per_team,
        "latency_s": {
            "p50": round(pct(latencies, 0.5), 2),
            "p99": round(pct(latencies, 0.99), 2),
            "max": round(max(latencies, default=0), 2),
        },
        "deferred_by_quiet_hours": {"told": len(deferred), "max_s": round(max(deferred, default=0), 1)},
        "recovery_s": recovery,
        "messages": len(messages),
    }


def outbox_empty(replicas: list[Replica]) -> bool:
    """Nothing waits in the shared outbox, as a live replica's gauge says (all share one database)."""
    for r in replicas:
        try:
            text = httpx.get(f"{r.url}/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        waiting = re.findall(r"^notifier_outbox_pending\{[^}]*\} ([0-9.e+]+)$", text, re.M)
        return sum(float(v) for v in waiting) == 0
    return False


# -- the run ----------------------------------------------------------------------------------------------------------


async def fresh_database() -> str:
    name = f"soak_{os.getpid()}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    return name


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.close()


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    seconds = args.minutes * 60
    faults = schedule(rng, seconds, args.quick)
    print(f"chaos soak with seed {args.seed}, {seconds:.0f}s, {args.groups} groups; faults:")
    for f in faults:
        print("  ", f)
    db = asyncio.run(fresh_database())
    fakes = Providers.start()
    tg, on_loop = fakes.tg, fakes.on_loop
    proxy = TcpProxy(5432)
    on_loop(proxy.start())
    pg_url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{db}"
    ports = [(free_port(), free_port()) for _ in range(2)]
    quiet = quiet_window(time.time() + 60, seconds)  # the replicas and peers take about a minute to start
    am_urls = [f"http://127.0.0.1:{web}" for web, _mesh in ports]
    replicas = [Replica(i, workdir, pg_url, fakes, am_urls, quiet) for i in range(3)]
    peers = [Peer(i, workdir, ports, replicas) for i in range(2)]
    gen = Generator(rng, args.groups, (args.hold_min, args.hold_max), peers)
    try:
        replicas[0].start()
        replicas[0].wait_ready()  # the first one migrates the schema
        for r in replicas[1:]:
            r.start()
        for r in replicas[1:]:
            r.wait_ready()
        for p in peers:
            p.start()
        for p in peers:
            p.wait_ready()
        start = time.time()
        happened = Happened(start, quiet=quiet)
        if quiet is not None:
            print(f"  quiet hours of team2 (email, defer): t+{quiet[0] - start:.0f}s to t+{quiet[1] - start:.0f}s")
        presses = Presser(random.Random(args.seed + 1), tg)
        pg_cut_at = 0.0
        gen.setup(start)
        gen.resolve_all_at(start + seconds * 0.8)
        pending = list(faults)
        restarts: list[tuple[float, Any]] = []  # (when, what to start again)

        while time.time() - start < seconds:
            now = time.time()
            gen.tick(now)
            presses.tick(now)
            while pending and now - start >= pending[0].at:
                f = pending.pop(0)
                print(f"  {now - start:6.0f}s  {f.kind}", flush=True)
                what: Any = {"kill_replica": replicas[f.target % 3], "kill_peer": peers[f.target % 2]}.get(f.kind)
                what = "pg" if f.kind in ("pg_restart", "pg_down") else "tg" if f.kind == "tg_slow" else what
                held = [r for r in restarts if what is not None and r[1] == what]
                if held:  # already down: the fault only holds it down longer
                    restarts.remove(held[0])
                    restarts.append((max(held[0][0], now + f.length), what))
                elif f.kind == "kill_replica":
                    replicas[f.target].kill9()
                    happened.kills.append(now)
                    restarts.append((now + f.length, replicas[f.target]))
                elif f.kind in ("pg_restart", "pg_down"):
                    on_loop(proxy.cut())
                    pg_cut_at = now
                    restarts.append((now + f.length, "pg"))
                elif f.kind == "kill_peer":
                    peers[f.target].kill9()
                    restarts.append((now + f.length, peers[f.target]))
                elif f.kind == "tg_429":
                    tg.loop.call_soon_threadsafe(tg.fake.fail_next, 6, 429, "Too Many Requests: retry after 2", 2)
                    happened.ends.append((f.kind, now))
                elif f.kind == "tg_5xx":
                    tg.loop.call_soon_threadsafe(tg.fake.fail_next, 6, 502, "Bad Gateway")
                    happened.ends.append((f.kind, now))
                elif f.kind == "slack_429":
                    tg.loop.call_soon_threadsafe(fakes.slack.fail_next, 6, 429, 2)
                    happened.ends.append((f.kind, now))
                elif f.kind == "smtp_451":
                    fakes.smtp.handler.fail_with.extend(["451 4.3.0 try again later"] * 4)
                    happened.ends.append((f.kind, now))
                elif f.kind == "tg_slow":
                    tg.fake.delay = 10.0
                    restarts.append((now + f.length, "tg"))
                elif f.kind == "tg_reset":
                    tg.fake.reset_after_taking = 3
                    happened.ends.append((f.kind, now))
                elif f.kind == "storm":
                    gen.burst(now, f.target)
                elif f.kind == "huge":
                    gen.huge(now, f.target, f.length)
            for item in [r for r in restarts if r[0] <= now]:
                restarts.remove(item)
                what = item[1]
                if what == "pg":
                    on_loop(proxy.start())
                    happened.ends.append(("PostgreSQL", now))
                    happened.outages.append((pg_cut_at, now))
                elif what == "tg":
                    tg.fake.delay = 0.0
                    happened.ends.append(("tg_slow", now))
                else:
                    what.start()
                    happened.ends.append((f"{type(what).__name__.lower()} {what.i}", now))
            time.sleep(max(0.0, EVAL - (time.time() - now)))
        for _when, what in restarts:  # the run ended inside a fault: end it
            if what == "pg":
                on_loop(proxy.start())
                happened.outages.append((pg_cut_at, time.time()))
            elif what == "tg":
                tg.fake.delay = 0.0
            else:
                what.start()
        # drain: everything resolved; wait until every change is told (or the drain time runs out)
        deadline = time.time() + args.drain
        while time.time() < deadline:
            gen.tick(time.time())
            result = ledger(gen.changes, told(fakes), happened, summaries(fakes))
            if result["lost"] == 0 and not result["stuck_firing"] and outbox_empty(replicas):
                break
            time.sleep(EVAL)
        time.sleep(3 * EVAL)  # anything still on its way (a duplicate) lands
        happened.resets = list(tg.fake.resets)
        result = ledger(gen.changes, told(fakes), happened, summaries(fakes))
        result["seed"] = args.seed
        result["seconds"] = seconds
        result["faults"] = [str(f) for f in faults]
        result["generator_post_errors"] = gen.errors
        for r in replicas:
            r.stop()
        result["rss_mib"] = {f"replica-{r.i}": [[round(a, 1), round(b, 1)] for a, b in r.rss] for r in replicas}
        result["answered_503"] = sum(r.unavailable for r in replicas)
        result["telegram_429s"] = tg.fake.rate_limited
        result["telegram_resets"] = len(tg.fake.resets)
        result["watchdog_alarms"] = watchdog_alarms(fakes, start)
        result["escalation"] = escalations(gen.changes, fakes, told(fakes), presses.acks)
        result["presses"] = presses.report(tg.fake)
        result["messages_sent"] = [[round(m.at - start, 1), m.team, m.text] for m in told(fakes)]
        result["alert_changes"] = [[round(c.at - start, 1), c.alert, c.status] for c in gen.changes]
        result["outages"] = [[round(a - start, 1), round(b - start, 1)] for a, b in happened.outages]
        return result
    finally:  # every part stopped even when one of them fails to stop, and the database dropped
        for stop in [*(r.stop for r in replicas), *(p.stop for p in peers), fakes.stop]:
            try:
                stop()
            except Exception as exc:  # reported; the rest are still stopped
                print(f"stopping: {exc!r}", file=sys.stderr)
        if args.keep is None:
            asyncio.run(drop_database(db))
        else:
            print(f"kept for a post-mortem: the logs in {workdir}, the database {db}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--groups", type=int, default=60)
    ap.add_argument("--hold-min", type=float, default=20.0, help="shortest time an alert stays firing or resolved")
    ap.add_argument("--hold-max", type=float, default=120.0)
    ap.add_argument("--drain", type=float, default=300.0, help="seconds to wait for the outbox to drain at the end")
    ap.add_argument("--report", type=Path, help="write the ledger as JSON here")
    ap.add_argument("--quick", action="store_true", help="about a minute, fewer groups and faults (the tests run it)")
    ap.add_argument("--keep", type=Path, help="keep every process's log here, and the database, for a post-mortem")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped from outside: the processes go with it
    if args.quick:
        args.minutes, args.groups, args.hold_min, args.hold_max, args.drain = 1.0, 12, 12.0, 30.0, 90.0
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run(args, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
            result = run(args, Path(tmp))
    print()
    print(f"{'receiver':10} {'changes':>8} {'told':>8} {'folded':>7} {'lost':>6}")
    for team, row in sorted(result["per_receiver"].items()):
        print(f"{team:10} {row['changes']:8d} {row['told']:8d} {row['folded']:7d} {row['lost']:6d}")
    lat = result["latency_s"]
    print(f"change -> message: p50 {lat['p50']}s, p99 {lat['p99']}s, max {lat['max']}s")
    q = result["deferred_by_quiet_hours"]
    print(f"held by team2's quiet hours, told when they ended: {q['told']} changes, within {q['max_s']}s")
    print(f"recovery after each fault (s): {result['recovery_s']}")
    print(f"RSS MiB per replica life (at ready, at its end): {result['rss_mib']}")
    print(
        f"503s answered to Alertmanager (PostgreSQL away): {result['answered_503']}; "
        f"Bot API 429s: {result['telegram_429s']}; messages taken, then their connection reset: "
        f"{result['telegram_resets']}"
    )
    print(f"WatchdogMissing messages: {result['watchdog_alarms'] or 'none'}")
    esc = result["escalation"]
    print(
        f"escalation (team3 -> ntfy after {ESCALATE_AFTER:.0f}s): {esc['pages']} pages, {esc['expected']} groups that "
        f"had to page, {len(esc['missed'])} missed, {len(esc['early'])} early"
    )
    for key in ("lost_list", "folded_list", "went_back_list", "duplicates_list", "stuck_firing"):
        if result[key]:
            print(f"{key}: {result[key]}")
    for key in ("missed", "early", "after_ack"):
        if esc[key]:
            print(f"escalation {key}: {esc[key]}")
    pr = result["presses"]
    print(f"presses (Ack on team3): {pr['pressed']} pressed, {pr['acknowledged']} acknowledged")
    unexplained = len(result["duplicates_unexplained"])
    print(
        f"soak: {result['changes']} changes, {result['lost']} lost, {result['folded']} folded, "
        f"{result['duplicates']} duplicates "
        f"({result['duplicates_legitimate']} legitimate), {result['went_back']} went back, "
        f"{len(result['stuck_firing'])} stuck firing, {result['messages']} messages"
    )
    if args.report:
        args.report.write_text(json.dumps(result, indent=2))
    bad = (
        result["lost"]
        or result["went_back"]
        or unexplained
        or result["stuck_firing"]
        or esc["missed"]
        or esc["early"]
        or esc["after_ack"]
        or pr["unanswered"]
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
