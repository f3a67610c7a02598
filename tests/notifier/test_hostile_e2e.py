"""Hostile and huge alerts through the real path (webhook -> store -> worker -> fake provider), on both stores: the
notifier stays responsive, loses no message for its content, lets no label reach past its field, and lets no secret
out of the process."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import SMTPServer, mail_text
from tests.fakes.telegram import FakeTelegram, ThreadedFake, check_html
from tests.helpers import (
    ROOT,
    TOKEN,
    ServerProcess,
    console_settings,
    fixture_json,
    free_port,
    make_group,
    settings_from,
    wait_for,
)
from tests.notifier.delivery.conftest import all_channels
from tests.notifier.harness import AUTH, delivery_rows, post, running


def compact_group(n: int, name: str = "BotHeartbeatLost") -> dict[str, Any]:
    """A group of n small alerts (30,000 of them are about 4.2 MB, as Alertmanager would send them)."""
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": name, "severity": "warning", "bot": f"b{i}"},
            "annotations": {},
            "startsAt": "2026-11-26T04:05:13Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": f"{i:x}",
        }
        for i in range(n)
    ]
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "status": "firing",
        "receiver": "notifier",
        "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name, "severity": "warning"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }


@pytest.mark.slow
def test_a_30000_alert_group_is_delivered_while_healthz_keeps_answering(store_url: str, tmp_path: Path) -> None:
    fake = ThreadedFake(FakeTelegram())
    try:
        port = free_port()
        cfg = {
            "server": {"listen": f"127.0.0.1:{port}", "auth": {"bearer_token": TOKEN}, "max_body_bytes": 8 << 20},
            "storage": {"url": store_url},
            "delivery": {"poll_interval": "50ms"},
            "receivers": [
                {"name": "tg", "telegram": [{"bot_token": fake.fake.token, "chat_id": 42, "api_url": fake.fake.url}]}
            ],
            "routes": {"receiver": "tg"},
        }
        path = tmp_path / "notifier.yml"
        path.write_text(yaml.safe_dump(cfg))
        server = ServerProcess(path, port).start()
        try:
            body = json.dumps(compact_group(30_000)).encode()
            with httpx.Client(base_url=server.url, timeout=60) as client:
                r = client.post(
                    "/webhook/alertmanager", content=body, headers={**AUTH, "Content-Type": "application/json"}
                )
                assert r.status_code == 202, r.text
                # while the worker decodes, renders and sends the group, the server answers every health check
                # (before, rendering took the event loop for minutes: /healthz hung)
                answered = 0
                deadline = time.monotonic() + 60
                while not fake.fake.sent and time.monotonic() < deadline:
                    assert client.get("/healthz", timeout=5).status_code == 200
                    answered += 1
                    time.sleep(0.02)
                assert answered >= 1
                texts = wait_texts(fake, 1)
            seen = "\n".join(texts)
            assert "+29900 more alerts" in seen  # 100 spelled out, the rest linked
            assert len(set(re.findall(r"· b(\d+)", seen))) == 100
            assert all(len(t) <= 4096 for t in texts)
            assert fake.fake.refused == 0
        finally:
            assert server.terminate() == 0
    finally:
        fake.stop()


def wait_texts(fake: ThreadedFake, n: int, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        texts = fake.texts()
        if len(texts) >= n:
            time.sleep(0.3)  # the other parts of a split message follow at once
            return fake.texts()
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} messages within {timeout}s")


HOSTILE_NAME = "<!channel> <@U123ABC> <http://evil.example|click me>"


async def test_hostile_labels_reach_every_channel_and_nowhere_else(
    store_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack, smtp: SMTPServer
) -> None:
    body = make_group(2, severity="critical", name=HOSTILE_NAME)
    body["commonLabels"]["alertname"] = body["groupLabels"]["alertname"] = "Draw\u202edown\u200b " + HOSTILE_NAME
    for a in body["alerts"]:
        a["labels"]["bot"] = "b" * 5000  # row 3: a label far longer than a Telegram message
        a["labels"]["region"] = "eu`west"  # row 10: a backtick inside Slack's code span
        a["generatorURL"] = "javascript:alert(document.cookie)"  # row 8
        a["annotations"]["runbook_url"] = "data:text/html;base64,PHNjcmlwdD4="
    async with running(settings_from(all_channels(fake_telegram, fake_slack, smtp), store_url)) as (client, rt):
        assert (await post(client, json.dumps(body))).status_code == 202
        await wait_for(lambda: _all_sent(rt), timeout=30)
        assert fake_telegram.refused == 0 and fake_slack.refused == 0
        tg = fake_telegram.sent[0].text
        visible = check_html(tg)
        assert "b" * 100 in visible and "javascript:" not in tg and "data:" not in tg
        assert "\u202e" not in visible and "\u200b" not in visible
        for p in fake_slack.posted:
            # mrkdwn (the top-level text, sections, contexts) is parsed for mentions and links; the header block is
            # plain_text, which Slack shows literally
            mrkdwn = [p.text] + [
                t["text"]
                for b in p.blocks
                if b["type"] != "header"
                for t in ([b["text"]] if "text" in b else b["elements"])
            ]
            for text in mrkdwn:
                assert "<!channel>" not in text and "<@U123ABC>" not in text and "<http://evil.example|" not in text
            assert p.blocks[0]["type"] == "header" and p.blocks[0]["text"]["type"] == "plain_text"
            assert "&lt;!channel&gt;" in p.text  # the top-level text too, which Slack parses for mentions
            assert "javascript:" not in p.all_text
            assert "euˋwest" in p.all_text
        mail = smtp.messages[0].message
        subject = str(mail["Subject"])
        assert "Drawdown" in subject and "\u202e" not in subject and "\n" not in subject
        assert "javascript:" not in mail_text(mail, "html")


async def test_a_message_refused_for_its_content_arrives_in_the_minimal_form(
    store_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack
) -> None:
    fake_telegram.fail_next(1, 400, "Bad Request: message is too long")
    fake_slack.fail_next(1, 400, error="invalid_blocks")
    cfg = all_channels(fake_telegram, fake_slack, None)
    # one Slack target, so that the scripted refusal is the webhook's whichever message the worker sends first
    cfg["receivers"] = [r for r in cfg["receivers"] if r["name"] in ("tg", "slack-hook")]
    cfg["routes"] = {"receiver": "tg", "routes": [{"receivers": ["tg", "slack-hook"]}]}
    async with running(settings_from(cfg, store_url)) as (client, rt):
        assert (await post(client, json.dumps(make_group(3, severity="critical")))).status_code == 202
        await wait_for(lambda: _all_sent(rt), timeout=30)
        minimal = fake_telegram.sent[0]
        assert minimal.parse_mode is None
        assert minimal.text.startswith("CRITICAL: LargeDrawdown (3 firing, 0 resolved)")
        assert "http://alertmanager:9093/#/alerts?filter=" in minimal.text
        hook = [p for p in fake_slack.posted if p.via == "webhook"]
        assert hook[0].blocks == [] and hook[0].text.startswith("CRITICAL: LargeDrawdown")
        metrics = (await client.get("/metrics")).text
        assert 'notifier_content_rejected_total{channel="telegram",outcome="fallback_sent"} 1.0' in metrics
        assert 'notifier_content_rejected_total{channel="slack",outcome="fallback_sent"} 1.0' in metrics


async def test_when_even_the_minimal_form_is_refused_the_dead_letter_is_counted(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack
) -> None:
    fake_telegram.fail_next(2, 400, "Bad Request: message is too long")
    cfg = all_channels(fake_telegram, fake_slack, None)
    cfg["receivers"] = cfg["receivers"][:1]
    cfg["routes"] = {"receiver": "tg"}
    async with running(settings_from(cfg, sqlite_url)) as (client, rt):
        assert (await post(client, json.dumps(make_group(1)))).status_code == 202
        await wait_for(lambda: _states(rt, {"dead"}))
        rows = await delivery_rows(rt)
        assert "the minimal form too" in rows[0]["last_error"]
        metrics = (await client.get("/metrics")).text
        assert 'notifier_content_rejected_total{channel="telegram",outcome="dead"} 1.0' in metrics


async def test_the_bot_token_echoed_by_a_server_is_in_no_answer_output_or_log(
    store_url: str,
    fake_telegram: FakeTelegram,
    fake_slack: FakeSlack,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_telegram.echo_path_404 = True
    token = fake_telegram.token
    cfg = all_channels(fake_telegram, fake_slack, None, max_attempts=2)
    cfg["receivers"] = cfg["receivers"][:1]
    cfg["routes"] = {"receiver": "tg"}
    caplog.set_level(logging.DEBUG)
    async with running(settings_from(cfg, store_url)) as (client, rt):
        assert (await post(client, json.dumps(make_group(1)))).status_code == 202
        await wait_for(lambda: _states(rt, {"dead"}), timeout=30)
        api = (await client.get("/api/v1/deliveries", headers=AUTH)).text
    assert "Not Found: no route for POST /bot***/sendMessage" in api  # what went wrong stays readable
    assert token not in api
    logged = "\n".join(caplog.text.splitlines() + [r.getMessage() for r in caplog.records])
    assert "/bot***/sendMessage" in logged
    assert token not in logged and token.replace(":", "%3A") not in logged
    config = tmp_path / "notifier.yml"
    config.write_text(yaml.safe_dump({**cfg, "storage": {"url": store_url}}))
    cli = subprocess.run(  # noqa: ASYNC221 -- the server is stopped; the CLI reads the store alone
        [sys.executable, "-m", "notifier", "deliveries", "--config", str(config), "--state", "dead"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert "/bot***/sendMessage" in cli.stdout
    assert token not in cli.stdout + cli.stderr


BAD_BODIES = [
    ("alerts[0].labels.alertname", lambda b: b["alerts"][0]["labels"].update(alertname="Draw\u0000down")),
    ("alerts[1].annotations.summary", lambda b: b["alerts"][1]["annotations"].update(summary="\u0000")),
    ("commonLabels.alertname", lambda b: b["commonLabels"].update(alertname="x\u0000")),
    ("alerts[0].startsAt", lambda b: b["alerts"][0].update(startsAt="0001-01-01T00:00:00+01:00")),
    ("alerts[0].endsAt", lambda b: b["alerts"][0].update(endsAt="9999-12-31T23:59:59-01:00")),
    ("alerts[0].startsAt", lambda b: b["alerts"][0].update(startsAt="2026-11-26T04:05:13")),
]


@pytest.mark.parametrize(("field", "mutate"), BAD_BODIES, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_BODIES)])
async def test_what_a_store_cannot_hold_is_a_400_naming_the_field(store_url: str, field: str, mutate: Any) -> None:
    body = fixture_json("01-critical-firing-two-alerts.json")
    mutate(body)
    cfg = {
        "server": {"auth": {"bearer_token": TOKEN}},
        "receivers": [
            {
                "name": "mail",
                "email": [{"host": "127.0.0.1", "port": 25, "from": "a@example.com", "to": ["b@example.com"]}],
                "digest": {"schedule": "every 1h"},
            }
        ],
        "routes": {"receiver": "mail", "digest": True},  # the digest items hold the labels as text
    }
    async with running(settings_from(cfg, store_url)) as (client, _rt):
        r = await post(client, json.dumps(body))
        assert r.status_code == 400, r.text
        assert r.json()["field"] == field
        assert (await post(client, json.dumps(fixture_json("01-critical-firing-two-alerts.json")))).status_code == 202


@pytest.mark.parametrize("levels", [65, 500, 980, 200_000])
@pytest.mark.parametrize(
    ("where", "field"),
    [('"labels": {', "alerts[0].labels"), ('"version": "4"', "zz"), ('"annotations": {', "alerts[0].annotations")],
)
async def test_deep_nesting_is_a_400_naming_where(store_url: str, where: str, field: str, levels: int) -> None:
    """Deeper than 64 levels anywhere, counting the body itself: under a key the payload does not know too, where
    the decoder would skip it (up to Python's recursion limit) and the body would be stored."""
    raw = json.dumps(fixture_json("01-critical-firing-two-alerts.json"))
    deep = "[" * (levels - 1) + "]" * (levels - 1)
    body = raw.replace(where, f'"zz": {deep}, {where}' if field == "zz" else f'{where}"x": {deep}, ', 1)
    async with running(console_settings(store_url)) as (client, _rt):
        r = await post(client, body)
        assert r.status_code == 400, r.text
        assert r.json()["field"].startswith(field), r.json()
        if field == "zz":  # in labels, an array is refused for its type already
            assert r.json()["error"] == "nested deeper than 64 levels"


async def test_nesting_up_to_64_levels_is_accepted(sqlite_url: str) -> None:
    raw = json.dumps(fixture_json("01-critical-firing-two-alerts.json"))
    body = raw.replace('"version": "4"', '"zz": ' + "[" * 63 + "]" * 63 + ', "version": "4"', 1)
    async with running(console_settings(sqlite_url)) as (client, _rt):
        assert (await post(client, body)).status_code == 202


async def _all_sent(rt: Any) -> bool:
    rows = await delivery_rows(rt)
    return bool(rows) and all(r["state"] == "sent" for r in rows)


async def _states(rt: Any, states: set[str]) -> bool:
    rows = await delivery_rows(rt)
    return bool(rows) and {r["state"] for r in rows} <= states
