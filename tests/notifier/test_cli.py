"""The CLI: render prints what a receiver would send; send-test sends a real message; deliveries lists the outbox;
prune deletes old history at once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fakes.telegram import FakeTelegram, check_html
from tests.helpers import FIXTURES, ROOT


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )


def config(tmp_path: Path, tg: FakeTelegram) -> Path:
    p = tmp_path / "n.yml"
    p.write_text(
        f"storage: {{url: 'sqlite:///{tmp_path}/n.db'}}\n"
        f"receivers: [{{name: tg, telegram: [{{bot_token: '{tg.token}', chat_id: 42, api_url: '{tg.url}'}}],"
        " slack: [{webhook_url: 'http://127.0.0.1:9/x'}], log: [{}]}]\nroutes: {receiver: tg}\n"
    )
    return p


async def test_render_prints_every_target(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    cfg = config(tmp_path, fake_telegram)
    r = await asyncio.to_thread(
        cli,
        "--config",
        str(cfg),
        "render",
        "--receiver",
        "tg",
        "--json",
        str(FIXTURES / "01-critical-firing-two-alerts.json"),
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [e["channel"] for e in out] == ["telegram", "slack", "log"]
    assert "grid-btc" in check_html(out[0]["messages"][0])
    assert out[1]["messages"][0]["attachments"][0]["blocks"]
    assert fake_telegram.sent == []  # render sends nothing
    r = await asyncio.to_thread(cli, "--config", str(cfg), "render", "--receiver", "nobody", str(cfg))
    assert r.returncode == 1 and "no receiver 'nobody'" in r.stderr
    r = await asyncio.to_thread(cli, "--config", str(cfg), "render", "--receiver", "tg", str(cfg))
    assert r.returncode == 1 and "not valid JSON" in r.stderr


async def test_send_test_sends_a_real_message_and_reports_failures(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    cfg = config(tmp_path, fake_telegram)
    r = await asyncio.to_thread(cli, "--config", str(cfg), "send-test", "--receiver", "tg", "--severity", "critical")
    assert r.returncode == 1  # the slack target is unreachable
    assert "tg/telegram/0: sent" in r.stdout and "tg/slack/0: FAILED" in r.stderr
    assert len(fake_telegram.sent) == 1
    assert "[TEST]" in fake_telegram.sent[0].text and "CRITICAL" in fake_telegram.sent[0].text
    assert fake_telegram.token not in r.stdout + r.stderr


async def test_deliveries_cli(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    cfg = config(tmp_path, fake_telegram)
    r = await asyncio.to_thread(cli, "--config", str(cfg), "deliveries", "--state", "dead")
    assert r.returncode == 0 and r.stdout == "no dead deliveries\n"
    r = await asyncio.to_thread(cli, "deliveries", "--config", str(cfg))  # --config after the command, too
    assert r.returncode == 0 and r.stdout == "no deliveries yet\n"
    r = await asyncio.to_thread(cli, "--config", str(cfg), "deliveries", "--retry", "nope")
    assert r.returncode == 1 and "missing" in r.stderr


async def test_deliveries_are_a_table_with_a_header(tmp_path: Path) -> None:
    from tests.helpers import console_settings, fixture_bytes
    from tests.notifier.harness import post, running

    url = f"sqlite:///{tmp_path}/n.db"
    async with running(console_settings(url)) as (client, _rt):
        assert (await post(client, fixture_bytes("01-critical-firing-two-alerts.json"))).status_code == 202
    cfg = tmp_path / "n.yml"
    cfg.write_text(
        f"storage: {{url: '{url}'}}\nreceivers: [{{name: console, log: [{{}}]}}]\nroutes: {{receiver: console}}\n"
    )
    r = await asyncio.to_thread(cli, "deliveries", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()
    assert header.split() == ["ID", "STATE", "RECEIVER/TARGET", "ALERTNAME", "AGE", "ATTEMPTS", "LAST", "ERROR"]
    cells = row.split()
    assert cells[1:4] == ["sent", "console/log/0", "CriticalDrawdown"] and cells[5] == "1"
    assert cells[4].endswith("s")  # its age, in seconds


def test_every_command_and_option_has_help_with_its_default() -> None:
    r = cli("send-test", "--help")
    assert "--severity {critical,warning,info}" in r.stdout and "(default: warning)" in r.stdout
    r = cli("deliveries", "--help")
    assert "at most this many rows (1 to 1000) (default: 50)" in " ".join(r.stdout.split()) and "--config" in r.stdout
    r = cli("--help")
    for command in ("serve", "check-config", "migrate", "render", "send-test", "deliveries", "prune"):
        assert f"    {command}" in r.stdout
    r = cli("check-config", "--config", str(ROOT / "notifier.yml"))
    assert r.returncode == 0 and "OK" in r.stdout


async def test_prune_deletes_what_is_older_than_asked(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    import sqlite3
    import time

    cfg = config(tmp_path, fake_telegram)
    r = await asyncio.to_thread(cli, "--config", str(cfg), "prune", "--older-than", "2h")
    assert r.returncode == 2 and "--older-than: expected at least 1d" in r.stderr
    r = await asyncio.to_thread(cli, "--config", str(cfg), "prune")  # creates the schema; nothing to delete yet
    assert r.returncode == 0, r.stderr
    day = 86400.0
    with sqlite3.connect(tmp_path / "n.db") as db:
        now = time.time()
        for nid, age in (("OLD", 10 * day), ("NEW", 2 * day)):
            db.execute(
                "INSERT INTO notifications (id, received_at, am_receiver, group_key, status, alert_count,"
                " redelivery_key, payload) VALUES (?, ?, 'am', 'g', 'firing', 1, ?, '{}')",
                (nid, now - age, nid),
            )
    r = await asyncio.to_thread(cli, "--config", str(cfg), "prune")  # retention 30d: both are younger
    assert "notifications  0 deleted" in r.stdout
    r = await asyncio.to_thread(cli, "--config", str(cfg), "prune", "--older-than", "7d")
    assert r.returncode == 0 and "notifications  1 deleted" in r.stdout, r.stdout + r.stderr
    with sqlite3.connect(tmp_path / "n.db") as db:
        assert [row[0] for row in db.execute("SELECT id FROM notifications")] == ["NEW"]


async def test_deliveries_and_explain_print_no_terminal_escapes(tmp_path: Path) -> None:
    """A group key (which anyone who can push to Alertmanager shapes) carrying escape sequences that would retitle
    the terminal and clear it, and a right-to-left override: shown as escapes, never sent to the terminal."""
    from tests.helpers import console_settings, make_group
    from tests.notifier.harness import post, running

    url = f"sqlite:///{tmp_path}/n.db"
    name = "Evil\x1b]0;pwned\x07\x1b[2J\u202eexe"
    group = make_group(1, name=name, group_key=f'{{}}:{{alertname="{name}"}}')
    async with running(console_settings(url)) as (client, _rt):
        assert (await post(client, json.dumps(group))).status_code == 202
    cfg = tmp_path / "n.yml"
    cfg.write_text(
        f"storage: {{url: '{url}'}}\nreceivers: [{{name: console, log: [{{}}]}}]\nroutes: {{receiver: console}}\n"
    )
    listed = await asyncio.to_thread(cli, "deliveries", "--config", str(cfg))
    explained = await asyncio.to_thread(cli, "explain", "--config", str(cfg), "--group", group["groupKey"])
    for r in (listed, explained):
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout and "\x07" not in r.stdout and "\u202e" not in r.stdout
    assert "Evil\\x1b]0;pwned\\x07\\x1b[2J\\u202eexe" in explained.stdout
    assert "Evil\\x1b]0;pwned" in listed.stdout
