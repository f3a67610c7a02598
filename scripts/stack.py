"""The whole stack without Docker, from the Debian binaries: demo bot exporter -> Prometheus (the project's rules)
-> Alertmanager (the project's routing) -> notifier (log receiver). Configs are generated for localhost into
.stack/, logs go to .stack/logs/; Ctrl-C (or SIGTERM, SIGHUP) stops everything.

With a Redis (`--redis-url`, by default the local one if it answers), the demo bots publish their events there and
the exporter subscribes, as with a real bot, and Redis's own exporter runs; with a PostgreSQL (`--postgres-dsn`, by
default the local one if it answers), PostgreSQL's exporter runs; the host exporter runs when it is installed.
Those are Debian's prometheus-node-exporter, prometheus-postgres-exporter and prometheus-redis-exporter: every
dashboard panel has data when all three run.

    make stack                      # or: .venv/bin/python scripts/stack.py --scenario exchange-trouble

Chat actions (buttons and commands in Telegram) against the stack's own fake Telegram, `--chat-actions`, or a
real bot, `--telegram-token-file FILE --telegram-chat ID --telegram-user YOUR_TELEGRAM_ID`: the notifier then sends to that
chat, with Ack and Silence buttons that create silences in the stack's Alertmanager. A critical group nobody
acknowledges for a minute escalates to a second chat, and the notifier watches Prometheus' Watchdog.

The end-to-end test builds the same stack with faster timings (`fast=True`): a generated copy of the rules with
`for` and range windows 60 times shorter, never an edit of the shipped files.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: `scripts.` is found from the project's root
from scripts.local_ports import answers, taken  # noqa: E402

MON = ROOT / "monitoring"
LOUD_CHAT = -1009999  # the fake Telegram chat of --chat-actions' escalation step


@dataclass
class Ports:
    exporter: int = 9100
    prometheus: int = 9090
    alertmanager: int = 9093
    notifier: int = 9095
    node: int = 9101  # the host ports the compose file publishes these exporters on
    postgres: int = 9102
    redis: int = 9103
    telegram: int = 9104  # the fake Telegram Bot API of --chat-actions


@dataclass
class Stack:
    """Generates the configs and runs the processes."""

    workdir: Path
    ports: Ports = field(default_factory=Ports)
    scenario: str = "normal"
    fast: bool = False
    token: str = "stack-token"
    notifier_config: dict[str, Any] | None = None  # the notifier's receivers and routes; default: log everything
    redis_url: str | None = None  # the demo's events go through this Redis, which its exporter watches
    postgres_dsn: str | None = None  # watched by PostgreSQL's exporter
    chat: dict[str, Any] | None = None  # chat actions: {"token", "chat", "user", "api_url"}
    fake_telegram: Any = None  # the fake Bot API of --chat-actions, running in a thread
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    # -- configs ---------------------------------------------------------------------------------------------------
    def write_configs(self) -> None:
        p = self.ports
        rules_dir = self.workdir / "rules"
        rules_dir.mkdir(exist_ok=True)
        for f in (MON / "prometheus" / "rules").glob("*.yml"):
            text = f.read_text()
            if self.fast:  # `for:` and windows 60 times shorter (5m -> 5s): alerts fire within seconds, in order
                text = re.sub(r"for: (\d+)([smh])", _scaled_for, text)
                text = re.sub(r"\[(\d+)([smh])\]", _scaled_window, text)
            # the stack runs no Grafana (Debian has no package of it): no Dashboard button that leads nowhere
            text = re.sub(r"^\s*dashboard_url: .*\n", "", text, flags=re.M)
            (rules_dir / f.name).write_text(text)
        interval = "1s" if self.fast else "15s"
        prom = yaml.safe_load((MON / "prometheus" / "prometheus.yml").read_text())
        prom["global"].update(scrape_interval=interval, evaluation_interval=interval)
        prom["rule_files"] = [str(rules_dir / "*.yml")]
        prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{p.alertmanager}"]
        local = {
            "prometheus": p.prometheus,
            "traderagent-bot": p.exporter,
            "alertmanager": p.alertmanager,
            "notifier": p.notifier,
        }
        optional = {"node": p.node, "postgres": p.postgres, "redis": p.redis}
        local.update({job: optional[job] for job in self.extra_exporters()})
        prom["scrape_configs"] = [
            {**sc, "static_configs": [{"targets": [f"127.0.0.1:{local[sc['job_name']]}"]}]}
            for sc in prom["scrape_configs"]
            if sc["job_name"] in local
        ]
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(prom))

        am = yaml.safe_load((MON / "alertmanager" / "alertmanager.yml").read_text())
        token_file = self.workdir / "notifier_token"
        token_file.write_text(self.token)
        for r in am["receivers"]:
            for w in r.get("webhook_configs", []):
                w["url"] = f"http://127.0.0.1:{p.notifier}/webhook/alertmanager"
                w["http_config"]["authorization"]["credentials_file"] = str(token_file)
        if self.fast:
            for route in [am["route"], *am["route"]["routes"]]:
                route.update(group_wait="1s", group_interval="2s")
        (self.workdir / "alertmanager.yml").write_text(yaml.safe_dump(am))

        if self.chat is not None and self.notifier_config is None:
            telegram = {"bot_token": self.chat["token"], "chat_id": self.chat["chat"], "api_url": self.chat["api_url"]}
            loud = {**telegram, "chat_id": LOUD_CHAT}
            self.notifier_config = {
                "alertmanager": {"urls": [f"http://127.0.0.1:{p.alertmanager}"]},
                "actions": {"allowed": {"telegram": [self.chat["user"]]}, "telegram": {"poll_timeout": "10s"}},
                # a chart of each firing group's series follows its message, from the stack's Prometheus
                "charts": {"prometheus_url": f"http://127.0.0.1:{p.prometheus}", "range": "30m"},
                "receivers": [
                    {
                        "name": "console",
                        "message": {"chart": True},
                        "log": [{"format": "text"}],
                        "telegram": [telegram],
                    },
                    {"name": "loud", "telegram": [loud]},
                ],
                "routes": {
                    "receiver": "console",
                    "routes": [
                        {
                            "matchers": ['severity="critical"'],
                            "receivers": ["console"],
                            "escalation": [{"after": "1m", "receivers": ["loud"]}],
                        }
                    ],
                },
                "watchdog": {"expect_every": "2m", "receivers": ["console"]},
            }
        notifier = {
            "server": {"listen": f"127.0.0.1:{p.notifier}", "auth": {"bearer_token_file": str(token_file)}},
            "storage": {"url": f"sqlite:///{self.workdir}/notifier.db"},
            "delivery": {"poll_interval": "200ms"},
            **(
                self.notifier_config
                or {"receivers": [{"name": "console", "log": [{"format": "text"}]}], "routes": {"receiver": "console"}}
            ),
        }
        (self.workdir / "notifier.yml").write_text(yaml.safe_dump(notifier))

    def extra_exporters(self) -> list[str]:
        """The host, PostgreSQL and Redis exporters this stack runs: those installed and with something to watch."""
        out = []
        if shutil.which("prometheus-node-exporter"):
            out.append("node")
        if self.postgres_dsn and shutil.which("prometheus-postgres-exporter"):
            out.append("postgres")
        if self.redis_url and shutil.which("prometheus-redis-exporter"):
            out.append("redis")
        return out

    def ports_in_use(self) -> list[str]:
        """Each port of the stack that something else holds, with what holds it."""
        p = self.ports
        wanted = {"bot-exporter": p.exporter, "prometheus": p.prometheus, "alertmanager": p.alertmanager}
        wanted["notifier"] = p.notifier
        if self.chat is not None and self.chat.get("fake"):
            wanted["fake Telegram"] = p.telegram
        wanted.update({f"{job} exporter": getattr(p, job) for job in self.extra_exporters()})
        return taken(wanted)

    # -- processes -------------------------------------------------------------------------------------------------
    def _start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(self.workdir),
            env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1", **(env or {})},
        )

    def start(self) -> None:
        busy = self.ports_in_use()
        if busy:
            raise RuntimeError("; ".join(busy) + ". Stop it (a `make run` still running?), then start the stack again.")
        if self.chat is not None and self.chat.get("fake"):
            from tests.fakes.telegram import FakeTelegram, ThreadedFake  # the tests' strict fake, run for people

            fake = FakeTelegram(token=self.chat["token"], chats={self.chat["chat"], LOUD_CHAT})
            self.fake_telegram = ThreadedFake(fake, port=self.ports.telegram)
            self.chat["api_url"] = self.fake_telegram.fake.url
        self.write_configs()
        p = self.ports
        py = sys.executable
        exporter = [py, "-m", "exporter", "--demo", "--demo-scenario", self.scenario]
        exporter += ["--listen", f"127.0.0.1:{p.exporter}", "--data-dir", str(self.workdir / "exporter")]
        exporter += ["--cache-ttl", "0.5" if self.fast else "5", "--demo-interval", "0.1" if self.fast else "1"]
        if self.fast:  # 12 s of crash, 30 s of exchange trouble at 10 ticks a second
            exporter += ["--demo-crash-ticks", "300" if self.scenario == "exchange-trouble" else "120"]
        if self.redis_url:
            exporter += ["--redis-url", self.redis_url]
        self._start("bot-exporter", exporter)
        extra = self.extra_exporters()
        if "node" in extra:
            self._start(
                "node-exporter",
                [_binary("prometheus-node-exporter"), f"--web.listen-address=127.0.0.1:{p.node}"],
            )
        if "postgres" in extra and self.postgres_dsn:
            self._start(
                "postgres-exporter",
                [_binary("prometheus-postgres-exporter"), f"--web.listen-address=127.0.0.1:{p.postgres}"],
                env={"DATA_SOURCE_NAME": self.postgres_dsn},
            )
        if "redis" in extra and self.redis_url:
            self._start(
                "redis-exporter",
                [
                    _binary("prometheus-redis-exporter"),
                    f"-redis.addr={self.redis_url}",
                    f"-web.listen-address=127.0.0.1:{p.redis}",
                ],
            )
        self._start("notifier", [py, "-m", "notifier", "serve", "--config", str(self.workdir / "notifier.yml")])
        self._start(
            "alertmanager",
            [
                _binary("prometheus-alertmanager"),
                f"--config.file={self.workdir / 'alertmanager.yml'}",
                f"--storage.path={self.workdir / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{p.alertmanager}",
                f"--web.external-url=http://127.0.0.1:{p.alertmanager}/",
                "--cluster.listen-address=",
            ],
        )
        self._start(
            "prometheus",
            [
                _binary("prometheus"),
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{p.prometheus}",
                f"--web.external-url=http://127.0.0.1:{p.prometheus}/",
                "--storage.tsdb.retention.time=30d",
                "--web.enable-lifecycle",  # `curl -XPOST :9090/-/quit` stops it, to see the notifier's watchdog fire
            ],
        )
        for name, url in (
            ("bot-exporter", f"http://127.0.0.1:{p.exporter}/healthz"),
            ("notifier", f"http://127.0.0.1:{p.notifier}/readyz"),
            ("alertmanager", f"http://127.0.0.1:{p.alertmanager}/-/ready"),
            ("prometheus", f"http://127.0.0.1:{p.prometheus}/-/ready"),
        ):
            self._wait(name, url)
        time.sleep(0.5)
        for name, proc in self.procs.items():  # an answer from another process on a port must not pass for ours
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited; see {self.logs / (name + '.log')}")

    def _wait(self, name: str, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited; see {self.logs / (name + '.log')}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not become ready; see {self.logs / (name + '.log')}")

    def stop(self) -> None:
        if self.fake_telegram is not None:
            self.fake_telegram.stop()
            self.fake_telegram = None
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()  # gone, its ports closed, before the stack says it has stopped


def _scaled_for(m: re.Match[str]) -> str:
    seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
    return f"for: {max(1, seconds // 60)}s"


def _scaled_window(m: re.Match[str]) -> str:
    seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
    return f"[{max(5, seconds // 60)}s]"  # at least five 1 s scrapes, so that rate() has samples


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} not found: sudo apt-get install -y prometheus prometheus-alertmanager")
    return path


class _Stop(Exception):
    pass


def _stop(signum: int, _frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--scenario",
        choices=["normal", "crash", "stalled", "exchange-trouble"],
        default="crash",
        help="what the demo bots go through (default: %(default)s)",
    )
    ap.add_argument("--workdir", default=str(ROOT / ".stack"), help="configs, data and logs (default: %(default)s)")
    ap.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/0" if answers("127.0.0.1", 6379) else None,
        help="the demo's events go through this Redis (default: the local one if it answers: %(default)s)",
    )
    ap.add_argument(
        "--postgres-dsn",
        default="postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable" if answers("127.0.0.1", 5432) else None,
        help="a PostgreSQL for its exporter to watch (default: the local one if it answers: %(default)s)",
    )
    ap.add_argument(
        "--base-port",
        type=int,
        help="run on BASE..BASE+7 (exporter, Prometheus, Alertmanager, notifier, host, PostgreSQL and Redis "
        "exporters, fake Telegram) instead of 9100, 9090, 9093, 9095, 9101, 9102, 9103, 9104",
    )
    ap.add_argument(
        "--chat-actions",
        action="store_true",
        help="send to the stack's fake Telegram (port BASE+7, default 9104), with Ack and Silence buttons; "
        "press them with curl (see the README)",
    )
    ap.add_argument("--telegram-token-file", help="a real bot's token, in a file: the stack sends to --telegram-chat")
    ap.add_argument("--telegram-chat", help="the chat id the real bot posts to (it must be a member)")
    ap.add_argument(
        "--telegram-user",
        type=int,
        default=7001,
        help="the Telegram user id who may press the buttons (default: %(default)s, the fake chat's alice)",
    )
    a = ap.parse_args()
    chat: dict[str, Any] | None = None
    if a.telegram_token_file:
        if not a.telegram_chat:
            ap.error("--telegram-token-file needs --telegram-chat")
        token = Path(a.telegram_token_file).read_text().strip()
        chat = {
            "token": token,
            "chat": int(a.telegram_chat),
            "user": a.telegram_user,
            "api_url": "https://api.telegram.org",
        }
    elif a.chat_actions:
        chat = {"fake": True, "token": "123456:stack-fake", "chat": -1001234567890, "user": a.telegram_user}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)  # every way of stopping runs the `finally` below, which stops every child
    ports = Ports(*range(a.base_port, a.base_port + 8)) if a.base_port else Ports()
    stack = Stack(
        Path(a.workdir),
        ports,
        scenario=a.scenario,
        redis_url=a.redis_url or None,
        postgres_dsn=a.postgres_dsn or None,
        chat=chat,
    )
    try:
        stack.start()
        p = stack.ports
        extra = stack.extra_exporters()
        rows: list[tuple[str, str]] = [
            ("bot exporter", f"http://127.0.0.1:{p.exporter}/metrics"),
            ("Prometheus", f"http://127.0.0.1:{p.prometheus}/alerts"),
            ("Alertmanager", f"http://127.0.0.1:{p.alertmanager}"),
            ("notifier", f"http://127.0.0.1:{p.notifier}/api/v1/deliveries (Bearer {stack.token})"),
            ("messages", f"{stack.logs}/notifier.log (as a person reads them)"),
            *[(f"{job} exporter", f"http://127.0.0.1:{getattr(p, job)}/metrics") for job in extra],
        ]
        if stack.fake_telegram is not None:
            rows.append(
                ("fake Telegram", f"http://127.0.0.1:{p.telegram}/_fake/messages (press buttons: see the README)")
            )
        width = max(len(label) for label, _ in rows)
        missing = sorted({"node", "postgres", "redis"} - set(extra))
        note = f"\n  (no {', '.join(missing)} exporter: their dashboard panels stay empty)" if missing else ""
        print(
            f"The stack runs ({a.scenario} scenario). Logs: {stack.logs}\n"
            + "\n".join(f"  {label:<{width}}  {text}" for label, text in rows)
            + note
            + "\nCtrl-C stops everything.",
            flush=True,
        )
        while True:
            signal.pause()
    except _Stop as stop:
        print(f"{stop}: stopping the stack", flush=True)
        return 0
    except RuntimeError as exc:
        print(f"make stack: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
