"""The shipped Prometheus config, rules and Alertmanager routing, checked by promtool and amtool, and the
inhibitions proven on a running Alertmanager."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers import binary, run
from tests.monitoring.conftest import MON, local_alertmanager_config

CONTRACT_ALERTS = {
    "BotDown": "critical",
    "CriticalDrawdown": "critical",
    "DatabaseDown": "critical",
    "RedisDown": "critical",
    "HighErrorRate": "warning",
    "LargeDrawdown": "warning",
    "HighOrderFailureRate": "warning",
    "HighMemoryUsage": "warning",
    "HighCPUUsage": "warning",
    "DiskSpaceLow": "warning",
    "NoRecentTrades": "info",
    "RateLimitApproaching": "info",
    "HighAPILatency": "warning",
    "HighDatabaseConnections": "warning",
    "RedisHighMemory": "warning",
    "NotifierDown": "critical",
    "NotifierDeliveriesFailing": "warning",
    "NotifierOutboxBacklog": "warning",
    "Watchdog": "none",
}


def rules() -> dict[str, dict[str, Any]]:
    out = {}
    for f in (MON / "prometheus" / "rules").glob("*.yml"):
        for g in yaml.safe_load(f.read_text())["groups"]:
            for r in g["rules"]:
                out[r["alert"]] = r
    return out


def test_promtool_checks_the_config_and_rules() -> None:
    promtool = binary("promtool")
    r = run(promtool, "check", "config", str(MON / "prometheus" / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    r = run(promtool, "check", "rules", *map(str, (MON / "prometheus" / "rules").glob("*.yml")))
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_rule_tests_pass_and_cover_every_alert() -> None:
    promtool = binary("promtool")
    r = run(promtool, "test", "rules", str(MON / "prometheus" / "tests" / "rules_test.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    tests = yaml.safe_load((MON / "prometheus" / "tests" / "rules_test.yml").read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for t in tests:
        for a in t["alert_rule_test"]:
            (firing if a["exp_alerts"] else quiet).add(a["alertname"])
    assert firing == set(rules())
    assert quiet == set(rules()) - {"Watchdog"}  # every alert but the always-firing one has a case where it must not


def test_the_readme_alerts_exist_with_their_severities_and_annotations() -> None:
    rs = rules()
    for name, severity in CONTRACT_ALERTS.items():
        assert rs[name]["labels"]["severity"] == severity, name
        ann = rs[name]["annotations"]
        assert {"summary", "description", "runbook_url"} <= ann.keys(), name
        if name != "Watchdog":
            assert ("dashboard_url" in ann and "$value" in ann["description"]) or "$labels" in ann["description"], name
    assert "pg_up" in rs["DatabaseDown"]["expr"] and "redis_up" in rs["RedisDown"]["expr"]
    assert "> 0" in rs["RedisHighMemory"]["expr"]  # guarded: maxmemory unset is 0


def test_prometheus_scrapes_only_what_the_stack_runs() -> None:
    cfg = yaml.safe_load((MON / "prometheus" / "prometheus.yml").read_text())
    targets = {sc["job_name"]: sc["static_configs"][0]["targets"] for sc in cfg["scrape_configs"]}
    assert targets["traderagent-bot"] == ["bot-exporter:9100"]
    assert targets["node"] == ["node-exporter:9100"]
    assert targets["postgres"] == ["postgres-exporter:9187"] and targets["redis"] == ["redis-exporter:9121"]
    assert targets["notifier"] == ["notifier:9095"] and targets["alertmanager"] == ["alertmanager:9093"]
    assert cfg["global"]["scrape_interval"] == "15s" and cfg["global"]["external_labels"]


def test_amtool_checks_the_config_and_routes_each_severity() -> None:
    amtool = binary("amtool")
    cfg = str(MON / "alertmanager" / "alertmanager.yml")
    r = run(amtool, "check-config", cfg)
    assert r.returncode == 0, r.stdout + r.stderr
    for labels, receiver in (
        (["severity=critical", "alertname=CriticalDrawdown", "bot=grid-btc"], "notifier-critical"),
        (["severity=warning", "alertname=LargeDrawdown"], "notifier-warning"),
        (["severity=info", "alertname=NoRecentTrades"], "notifier-info"),
        (["alertname=Watchdog", "severity=none"], "notifier-watchdog"),
        (["alertname=Unlabelled"], "notifier-warning"),
    ):
        r = run(amtool, "config", "routes", "test", f"--config.file={cfg}", f"--verify.receivers={receiver}", *labels)
        assert r.returncode == 0, (labels, r.stdout, r.stderr)
    am = yaml.safe_load(Path(cfg).read_text())
    timing = {r["receiver"]: r for r in am["route"]["routes"]}
    assert timing["notifier-critical"]["repeat_interval"] == "1h"
    assert am["route"]["group_by"] == ["alertname", "bot"]
    for r in am["receivers"]:
        for w in r.get("webhook_configs", []):
            assert "credentials_file" in w["http_config"]["authorization"]  # the token is never in the file


def _alert(name: str, **labels: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": name, **labels},
        "annotations": {"summary": name},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
    }


def test_inhibitions_work_on_a_running_alertmanager(tmp_path: Path, alertmanager: Any) -> None:
    url = alertmanager(local_alertmanager_config(tmp_path, "http://127.0.0.1:9/hook", "t"))
    alerts = [
        _alert("CriticalDrawdown", severity="critical", bot="dca-eth"),
        _alert("LargeDrawdown", severity="warning", bot="dca-eth"),
        _alert("LargeDrawdown", severity="warning", bot="grid-btc"),  # another bot: not inhibited
        _alert("BotDown", severity="critical", bot="grid-btc"),
        _alert("NoRecentTrades", severity="info", bot="grid-btc"),
        _alert("HighErrorRate", severity="warning", bot="grid-btc"),
        _alert("NoRecentTrades", severity="info", bot="dca-eth"),
        _alert("DatabaseDown", severity="critical", instance="pg:9187"),
        _alert("HighDatabaseConnections", severity="warning", instance="pg:9187"),
    ]
    assert httpx.post(f"{url}/api/v2/alerts", json=alerts, timeout=5).status_code == 200
    deadline = time.monotonic() + 10
    state: dict[tuple[str, str], bool] = {}
    while time.monotonic() < deadline:
        got = httpx.get(f"{url}/api/v2/alerts", timeout=5).json()
        state = {
            (a["labels"]["alertname"], a["labels"].get("bot", a["labels"].get("instance", ""))): bool(
                a["status"]["inhibitedBy"]
            )
            for a in got
        }
        if len(state) == len(alerts) and state[("LargeDrawdown", "dca-eth")]:
            break
        time.sleep(0.3)
    assert state == {
        ("CriticalDrawdown", "dca-eth"): False,
        ("LargeDrawdown", "dca-eth"): True,
        ("LargeDrawdown", "grid-btc"): False,
        ("BotDown", "grid-btc"): False,
        ("NoRecentTrades", "grid-btc"): True,
        ("HighErrorRate", "grid-btc"): True,
        ("NoRecentTrades", "dca-eth"): False,
        ("DatabaseDown", "pg:9187"): False,
        ("HighDatabaseConnections", "pg:9187"): True,
    }


@pytest.mark.parametrize("name", ["traderagent.yml", "infrastructure.yml", "notifier.yml"])
def test_rule_files_are_yaml_with_groups(name: str) -> None:
    doc = yaml.safe_load((MON / "prometheus" / "rules" / name).read_text())
    assert doc["groups"] and all(g["rules"] for g in doc["groups"])


def test_every_runbook_url_has_its_section_in_runbooks_md() -> None:
    import re

    def slug(heading: str) -> str:  # GitHub's anchor for a heading
        return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")

    text = (MON / "RUNBOOKS.md").read_text()
    anchors = {slug(line[3:]) for line in text.splitlines() if line.startswith("## ")}
    for name, rule in rules().items():
        url = rule["annotations"]["runbook_url"]
        assert url.endswith("/monitoring/RUNBOOKS.md#" + url.rsplit("#", 1)[1]), name
        assert url.rsplit("#", 1)[1] in anchors, name
