"""End to end on the real binaries: the demo exporter's crash -> Prometheus evaluating the project's rules (a
generated copy with shorter `for` and windows) -> Alertmanager with the project's routing and inhibitions -> the
notifier -> the fake Telegram server. The demo's events go through the machine's Redis; the host, PostgreSQL and
Redis exporters run beside it, and every panel of every dashboard shows data from that live Prometheus."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.catalogue import CONTRACT
from scripts.stack import Ports, Stack
from tests.fakes.telegram import FakeTelegram, ThreadedFake
from tests.helpers import PG_ADMIN_URL, binary, free_port, need
from tests.monitoring.conftest import MON

TOKEN = "123456:e2e-token"


def wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_DSN = f"{PG_ADMIN_URL}?sslmode=disable"


def all_ports() -> Ports:
    return Ports(*(free_port() for _ in range(8)))


def services() -> None:
    """The real parts the whole stack runs: the Debian binaries, and the machine's Redis and PostgreSQL."""
    binary("prometheus")
    binary("prometheus-alertmanager")
    for name in ("prometheus-node-exporter", "prometheus-postgres-exporter", "prometheus-redis-exporter"):
        binary(name)
    import redis

    try:
        ok = bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        ok = False
    need(ok, f"Redis at {REDIS_URL}")


def telegram_stack(workdir: Path, scenario: str, **extra: Any) -> Iterator[tuple[Stack, ThreadedFake]]:
    """The whole stack, fast, its notifier delivering to a fake Telegram server: yields both, stops both."""
    tg = ThreadedFake(FakeTelegram(token=TOKEN, chats={-1001234567890}))
    notifier_config = {
        "receivers": [
            {"name": "oncall", "telegram": [{"bot_token": TOKEN, "chat_id": -1001234567890, "api_url": tg.fake.url}]}
        ],
        "routes": {"receiver": "oncall"},
    }
    s = Stack(workdir, all_ports(), scenario=scenario, fast=True, notifier_config=notifier_config, **extra)
    try:
        s.start()
        yield s, tg
    finally:
        s.stop()
        tg.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_available: bool) -> Iterator[tuple[Stack, ThreadedFake]]:
    services()
    need(pg_available, "PostgreSQL at 127.0.0.1:5432")
    workdir = Path(tmp_path_factory.mktemp("stack"))
    yield from telegram_stack(workdir, "crash", redis_url=REDIS_URL, postgres_dsn=POSTGRES_DSN)


def test_crash_pages_criticaldrawdown_inhibits_largedrawdown_and_resolves(stack: tuple[Stack, ThreadedFake]) -> None:
    s, tg = stack

    def critical() -> list[str]:
        return [t for t in tg.texts() if "CriticalDrawdown" in t and "dca-eth" in t and "CRITICAL" in t]

    wait(lambda: bool(critical()), 90, "CriticalDrawdown for dca-eth at the fake Telegram")
    # LargeDrawdown fired in Prometheus as well, and Alertmanager held it back
    am = f"http://127.0.0.1:{s.ports.alertmanager}"

    def large_inhibited() -> bool:
        alerts = httpx.get(f"{am}/api/v2/alerts", timeout=5).json()
        return any(
            a["labels"]["alertname"] == "LargeDrawdown"
            and a["labels"].get("bot") == "dca-eth"
            and a["status"]["inhibitedBy"]
            for a in alerts
        )

    wait(large_inhibited, 30, "LargeDrawdown of dca-eth inhibited by CriticalDrawdown")
    assert not [t for t in tg.texts() if "LargeDrawdown" in t and "dca-eth" in t]
    assert "Portfolio drawdown of dca-eth is" in critical()[0]
    # the market recovers: the resolved message follows, in the thread of the first
    wait(
        lambda: any("RESOLVED" in t and "CriticalDrawdown" in t for t in tg.texts()),
        120,
        "the resolved CriticalDrawdown message",
    )
    sent = list(tg.fake.sent)
    first = next(m for m in sent if "CriticalDrawdown" in m.text and "CRITICAL" in m.text)
    resolved = next(m for m in sent if "RESOLVED" in m.text and "CriticalDrawdown" in m.text)
    assert resolved.reply_to_message_id == first.message_id
    # while CriticalDrawdown fired, LargeDrawdown stayed silent; on the way back up, once the critical alert has
    # resolved and drawdown is still above 10 %, the warning may rightly follow
    large = [m for m in sent if "LargeDrawdown" in m.text and "dca-eth" in m.text]
    assert all(m.at >= resolved.at - 3.0 for m in large), [(m.at, resolved.at) for m in large]


def _panels() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for f in sorted((MON / "grafana" / "dashboards").glob("*.json")):
        d = json.loads(f.read_text())
        out += [(d["title"], p) for p in d["panels"]]
    return out


def _concrete(expr: str) -> str:
    for var, value in (
        ("$__rate_interval", "1m"),
        ("$__interval", "15s"),
        ("$bot", ".*"),
        ("$job", ".*"),
        ("$instance", ".*"),
    ):
        expr = expr.replace(var, value)
    return expr


def test_every_panel_of_every_dashboard_shows_data(stack: tuple[Stack, ThreadedFake]) -> None:
    s, _ = stack
    assert sorted(s.extra_exporters()) == ["node", "postgres", "redis"]
    prom = f"http://127.0.0.1:{s.ports.prometheus}"

    def query(expr: str) -> dict[str, Any]:
        r: dict[str, Any] = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10).json()
        return r

    for name in ("bot_total_trades", "bot_api_requests_total", "node_cpu_seconds_total", "pg_up", "redis_up"):
        wait(lambda name=name: query(name)["data"]["result"], 30, f"{name} in Prometheus")
    time.sleep(5)  # a few scrapes, so that rates and deltas have two samples
    empty = []
    for title, panel in _panels():
        for t in panel["targets"]:
            r = query(_concrete(t["expr"]))
            assert r["status"] == "success", (title, panel["title"], t["expr"], r)
            if not r["data"]["result"]:
                empty.append((title, panel["title"], t["expr"]))
    assert empty == []


def test_dashboards_use_only_metrics_that_exist() -> None:
    contract = {s.exposed for s in CONTRACT} | {f"{s.name}_bucket" for s in CONTRACT if s.kind == "histogram"}
    from prometheus_client import CollectorRegistry

    from notifier.channels.registry import PLUGINS
    from notifier.metrics import NotifierMetrics

    reg = CollectorRegistry()
    NotifierMetrics(reg, [("oncall", "telegram")], channels=list(PLUGINS))
    notifier = {s.name for fam in reg.collect() for s in fam.samples} | {f.name for f in reg.collect()}
    exporter_own = {"bot_exporter_source_up", "bot_exporter_scrape_duration_seconds_bucket"}
    external = {  # metrics of node-exporter, postgres-exporter, redis-exporter and Prometheus itself
        "up",
        "ALERTS",
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_memory_MemTotal_bytes",
        "node_filesystem_avail_bytes",
        "node_filesystem_size_bytes",
        "pg_up",
        "pg_stat_activity_count",
        "pg_settings_max_connections",
        "pg_stat_database_xact_commit",
        "pg_database_size_bytes",
        "redis_memory_used_bytes",
    }
    known = contract | notifier | exporter_own | external
    words = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{|\[|\)|$|\s)")
    functions = {
        "sum",
        "by",
        "rate",
        "increase",
        "delta",
        "deriv",
        "histogram_quantile",
        "avg",
        "max",
        "min",
        "time",
        "clamp_min",
        "avg_over_time",
        "stddev_over_time",
        "on",
        "le",
        "endpoint",
        "bot",
        "channel",
        "outcome",
        "severity",
        "status",
        "instance",
        "receiver",
        "reason",
        "datname",
    }
    for title, panel in _panels():
        datasource = panel["datasource"]
        assert datasource == {"type": "prometheus", "uid": "${datasource}"}, (title, panel["title"])
        for t in panel["targets"]:
            names = {m for m in words.findall(t["expr"]) if m not in functions}
            assert names <= known, (title, panel["title"], names - known)


def test_dashboards_variables_and_provisioning() -> None:
    import yaml

    ds = yaml.safe_load((MON / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert ds["datasources"][0]["uid"] == "prometheus"
    titles = set()
    for f in (MON / "grafana" / "dashboards").glob("*.json"):
        d = json.loads(f.read_text())
        titles.add(d["title"])
        names = {v["name"] for v in d["templating"]["list"]}
        assert {"datasource", "job", "instance"} <= names, f.name
        dsvar = next(v for v in d["templating"]["list"] if v["name"] == "datasource")
        assert dsvar["current"]["value"] == "prometheus"
    assert titles == {
        "Trading Bot Overview",
        "Trading Performance",
        "System Health",
        "Database Performance",
        "API Performance",
        "Notifier",
    }
    overview = json.loads((MON / "grafana" / "dashboards" / "traderagent-overview.json").read_text())
    dd = next(p for p in overview["panels"] if p["title"] == "Drawdown by bot")
    steps = [s["value"] for s in dd["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps == [None, 10, 20]  # the LargeDrawdown and CriticalDrawdown thresholds
