"""Helpers for tests: settings from dicts, captured payloads, waiting, the services switch, a running server."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from notifier.config import load_settings_from_mapping
from notifier.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "alertmanager-0.25"
PG_ADMIN_URL = os.environ.get("NOTIFIER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE = os.environ.get("NOTIFIER_REQUIRE_SERVICES", "") not in ("", "0", "false")
TOKEN = "s3cret"


BERLIN = ZoneInfo("Europe/Berlin")


def berlin(day: int, hour: int, minute: int = 0, month: int = 11) -> float:
    """Unix time of a wall-clock moment in Europe/Berlin in 2026 (the scripted days of the tests)."""
    return datetime(2026, month, day, hour, minute, tzinfo=BERLIN).timestamp()


def iso_z(t: float) -> str:
    """Alertmanager's time format."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def am_group(
    name: str,
    severity: str,
    alerts: list[tuple[str, str, float, float | None]],
    *,
    bot: str | None = None,
    summary: str | None = None,
    generator_url: bool = False,
) -> str:
    """An Alertmanager webhook body for one group; alerts are (fingerprint, status, startsAt, endsAt)."""
    body: dict[str, Any] = {
        "receiver": "notifier",
        "status": "firing" if any(a[1] == "firing" for a in alerts) else "resolved",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name, "severity": severity},
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "version": "4",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": name, "severity": severity, "bot": bot or f"bot-{fp}"},
                "annotations": {"summary": summary or f"{name} on bot-{fp}"},
                "startsAt": iso_z(start),
                "endsAt": iso_z(end) if end else "0001-01-01T00:00:00Z",
                "generatorURL": f"http://prom/{fp}" if generator_url else "",
                "fingerprint": fp,
            }
            for fp, status, start, end in alerts
        ],
    }
    return json.dumps(body)


def need(condition: bool, what: str) -> None:
    """Skip without `what`, or fail when the CI says every service must be there."""
    if condition:
        return
    if REQUIRE:
        pytest.fail(f"{what} is required (NOTIFIER_REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")


def fixture_names() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("0*.json"))


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture_bytes(name))
    return data


def settings_from(data: dict[str, Any], url: str) -> Settings:
    d = copy.deepcopy(data)
    d.setdefault("storage", {})["url"] = url
    d.setdefault("delivery", {}).setdefault("poll_interval", "50ms")
    return load_settings_from_mapping(d, source="test.yml", env={})


def console_settings(url: str, **extra: Any) -> Settings:
    base: dict[str, Any] = {
        "server": {"auth": {"bearer_token": TOKEN}},
        "receivers": [{"name": "console", "log": [{}]}],
        "routes": {"receiver": "console"},
    }
    base.update(extra)
    return settings_from(base, url)


def make_group(
    n: int,
    *,
    status: str = "firing",
    severity: str = "warning",
    name: str = "LargeDrawdown",
    group_key: str | None = None,
    resolved: set[int] | None = None,
    starts: str = "2026-11-26T04:05:13Z",
    extra_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    resolved = resolved or set()
    alerts = []
    for i in range(n):
        st = "resolved" if (status == "resolved" or i in resolved) else "firing"
        labels = {
            "alertname": name,
            "severity": severity,
            "bot": f"bot-{i:03d}",
            "symbol": "BTC/USDT",
            **(extra_labels or {}),
        }
        alerts.append(
            {
                "status": st,
                "labels": labels,
                "annotations": {"summary": f"{name} on bot-{i:03d}", "description": f"Drawdown is {10 + i % 10}.5%."},
                "startsAt": starts,
                "endsAt": "2026-11-26T05:05:13Z" if st == "resolved" else "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
                "fingerprint": f"{i:016x}",
            }
        )
    gk = group_key or f'{{}}:{{alertname="{name}", severity="{severity}"}}'
    return {
        "receiver": "notifier",
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "alerts": alerts,
        "groupLabels": {"alertname": name, "severity": severity},
        "commonLabels": {"alertname": name, "severity": severity},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": gk,
        "truncatedAlerts": 0,
    }


async def wait_for(cond: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while True:
        r = cond()
        if not isinstance(r, bool):
            r = await r
        if r:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`notifier serve` in its own process, as in production."""

    def __init__(self, config: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.port = port
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = config.parent / f"server-{port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "notifier", "serve", "--config", str(self.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=str(self.config.parent),
        )
        deadline = time.monotonic() + timeout
        import httpx

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def binary(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"the {name} binary (Debian package prometheus / prometheus-alertmanager)")
    assert path is not None
    return path


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=120, cwd=ROOT)


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


PRODUCTION_SECRETS = {
    "notifier_token": "t" * 32,
    "telegram_bot_token": "123456:abc",
    "smtp_password": "p",
    "slack_webhook_url": "https://hooks.slack.com/services/T/B/X",
}


def production_example(tmp_path: Path, **secrets: str) -> Path:
    """examples/notifier.production.yml as installed on a server, with its secret files (under tmp_path instead of
    /etc/notifier/secrets); `secrets` overrides their contents."""
    folder = tmp_path / "secrets"
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in {**PRODUCTION_SECRETS, **secrets}.items():
        (folder / name).write_text(value)
    text = (ROOT / "examples" / "notifier.production.yml").read_text()
    config = tmp_path / "notifier.yml"
    config.write_text(text.replace("/etc/notifier/secrets/", f"{folder}/"))
    return config


def wait_for_sync(cond: Callable[[], bool], timeout: float = 10.0, interval: float = 0.2) -> None:
    """`wait_for` for synchronous tests and fixtures."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
