"""The soak's real parts: the fake providers, a `notifier serve` replica, an Alertmanager peer."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.soak_parts.common import (
    BOT,
    CHATS,
    EMAIL_TEMPLATE,
    ESCALATE_AFTER,
    PRESSER,
    SLACK_CHANNEL,
    TEAMS,
    TEMPLATE,
    TOKEN,
    hhmm,
)
from tests.fakes.push import FakeNtfy
from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import SMTPServer
from tests.fakes.telegram import FakeTelegram, ThreadedFake
from tests.helpers import free_port, wait_http


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
