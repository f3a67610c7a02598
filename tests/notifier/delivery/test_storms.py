"""An alert storm into one Telegram group: one summary instead of a queue behind the flood limit, every group
represented, critical groups still sent on their own, nothing lost."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tests.fakes.telegram import FakeTelegram, check_html
from tests.helpers import TOKEN, make_group, settings_from, wait_for
from tests.notifier.harness import delivery_rows, post, running


async def test_a_storm_becomes_one_summary_and_critical_groups_go_alone(
    sqlite_url: str, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.group_limit_per_minute = 20
    cfg = {
        "server": {"auth": {"bearer_token": TOKEN}},
        "delivery": {"poll_interval": "50ms"},
        "storm": {"threshold": 10},
        "receivers": [
            {
                "name": "tg",
                "telegram": [
                    {"bot_token": fake_telegram.token, "chat_id": -1001234567890, "api_url": fake_telegram.url}
                ],
            }
        ],
        "routes": {"receiver": "tg"},
    }
    async with running(settings_from(cfg, sqlite_url)) as (client, rt):
        for i in range(30):
            body = make_group(
                2,
                name="LargeDrawdown" if i % 3 else "NoRecentTrades",
                severity="warning" if i % 3 else "info",
                group_key=f'{{}}:{{g="{i}"}}',
                extra_labels={"shard": str(i)},
            )
            for a in body["alerts"]:
                a["labels"]["bot"] = f"bot-{i:02d}"
                a["fingerprint"] = f"{i:08x}{a['fingerprint'][8:]}"
            body["commonLabels"]["bot"] = f"bot-{i:02d}"
            await post(client, json.dumps(body))
        for i in range(2):
            crit = make_group(1, name="CriticalDrawdown", severity="critical", group_key=f'{{}}:{{c="{i}"}}')
            crit["alerts"][0]["labels"]["bot"] = f"crit-{i}"
            crit["alerts"][0]["fingerprint"] = f"c{i:015x}"
            await post(client, json.dumps(crit))

        async def settled() -> bool:
            rows = await delivery_rows(rt)
            return bool(rows) and all(r["state"] == "sent" for r in rows)

        await wait_for(settled, timeout=30)
        texts = [check_html(s.text) for s in fake_telegram.sent]
        assert fake_telegram.rate_limited == 0  # the notifier stayed within the flood limit itself
        assert len(texts) <= 6, texts  # not 32 messages queued behind 20/minute
        summary = "\n".join(t for t in texts if "AlertStorm" in t)
        assert "alert groups at once" in summary
        shown = "\n".join(texts)
        for i in range(30):
            assert f"bot-{i:02d}" in shown, i  # every group represented
        alone = [t for t in texts if "CriticalDrawdown" in t and "AlertStorm" not in t]
        assert len(alone) == 2  # on their own
        metrics = (await client.get("/metrics")).text
        folded = next(
            float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("notifier_storm_groups_total")
        )
        assert folded >= 20
        rows: list[dict[str, Any]] = await delivery_rows(rt)
        assert sum(1 for r in rows if (r["provider_ref"] or "").startswith("storm:")) == folded


async def test_a_storm_of_hundreds_of_alert_names_still_fits_one_message(sqlite_url: str) -> None:
    """The summary of 400 groups with 400 different names stays within Telegram's 4096 characters."""
    from notifier.alertmanager import decode_payload, to_group
    from notifier.channels import telegram as telegram_channel
    from notifier.channels.telegram import utf16_len
    from notifier.domain import Message
    from notifier.templates import Renderer
    from tests.fakes.telegram import check_html

    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": f"Name{i:03d}", "severity": "warning"},
            "annotations": {"summary": "x"},
            "startsAt": "2026-11-26T04:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": f"{i:016x}",
        }
        for i in range(400)
    ]
    names = ", ".join(f"Name{i:03d} ×1" for i in range(400))
    body = {
        "version": "4",
        "receiver": "r",
        "status": "firing",
        "groupKey": "storm:t:1",
        "truncatedAlerts": 0,
        "groupLabels": {"alertname": "AlertStorm"},
        "commonLabels": {"alertname": "AlertStorm"},
        "commonAnnotations": {"summary": f"400 alert groups at once: 400 warning. {names}."},
        "externalURL": "http://am",
        "alerts": alerts,
    }
    msg = Message(delivery_id="d", receiver="r", target="t", group=to_group(decode_payload(json.dumps(body).encode())))
    parts = telegram_channel.render(Renderer(), msg, 1795668000.0)
    assert len(parts) <= 2
    assert all(utf16_len(check_html(p)) <= 4096 for p in parts)
    assert "more alerts" in check_html(parts[-1])


def test_a_waiting_summary_shows_a_group_that_changed_since_once_as_it_is_now() -> None:
    """A summary still waits behind the rate limit when a group it tells resolves: the summary that goes out lists
    that group once, resolved (before, it listed the group twice, firing and resolved, and the reader could not tell
    which held)."""
    from notifier.delivery.storms import _summary_payload
    from notifier.domain import ChangeRecord, Delivery

    def waiting(i: int, status: str) -> tuple[Delivery, dict[str, Any]]:
        body = make_group(1, name=f"Storm{i}", status=status, group_key=f'{{}}:{{s="{i}"}}')
        d = Delivery.new(
            id=f"d{i}{status}",
            notification_id=f"n{i}",
            receiver="tg",
            target="tg/0",
            channel="telegram",
            group_key=body["groupKey"],
            group_hash=hashlib.sha256(body["groupKey"].encode()).hexdigest(),
            change=ChangeRecord(new=1),
            now=0.0,
        )
        return d, body

    first = _summary_payload("tg/0", [waiting(i, "firing") for i in range(3)], [])
    later = _summary_payload("tg/0", [waiting(1, "resolved"), waiting(3, "firing")], first["alerts"])
    shown = [(a["labels"]["alertname"], a["status"]) for a in later["alerts"]]
    assert shown == [("Storm0", "firing"), ("Storm1", "resolved"), ("Storm2", "firing"), ("Storm3", "firing")]
    assert later["commonAnnotations"]["summary"].startswith("4 alert groups at once")
