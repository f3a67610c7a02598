"""Sample alert groups: what `check-config` renders every template against and what `send-test` sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from notifier.domain import Alert, AlertGroup, AlertStatus, Message, MessageKind, Severity


def sample_group(severity: Severity, now: float, *, resolved: bool = False) -> AlertGroup:
    start = datetime.fromtimestamp(now, UTC) - timedelta(minutes=12)
    end = datetime.fromtimestamp(now, UTC) if resolved else None
    status = AlertStatus.RESOLVED if resolved else AlertStatus.FIRING
    names = {Severity.CRITICAL: "CriticalDrawdown", Severity.WARNING: "LargeDrawdown", Severity.INFO: "NoRecentTrades"}
    labels = {
        "alertname": names[severity],
        "severity": severity.value,
        "bot": "grid-btc",
        "symbol": "BTC/USDT",
        "strategy": "grid",
        "job": "traderagent-bot",
    }
    alert = Alert(
        status=status,
        labels=labels,
        annotations={
            "summary": f"Test notification ({severity.value}) from the TRADERAGENT notifier",
            "description": "If you can read this, this receiver is set up right. <b>&</b> escaping works too.",
            "runbook_url": "https://example.com/runbooks/test",
        },
        starts_at=start,
        ends_at=end,
        generator_url="http://prometheus:9090/graph?g0.expr=up",
        fingerprint="0000000000000000",
    )
    return AlertGroup(
        receiver="notifier",
        status=status,
        group_key=f'{{}}:{{alertname="{names[severity]}", test="true"}}',
        group_labels={"alertname": names[severity]},
        common_labels=labels,
        common_annotations={},
        external_url="http://alertmanager:9093",
        alerts=(alert,),
    )


def test_message(receiver: str, target: str, severity: Severity, now: float, *, resolved: bool = False) -> Message:
    return Message(
        delivery_id="send-test",
        receiver=receiver,
        target=target,
        group=sample_group(severity, now, resolved=resolved),
        kind=MessageKind.TEST,
        silent=False,
    )
