"""Alert storms: when more than `storm.threshold` groups wait for one target, they become one summary message.

The check runs when the rate limiter turns a message away, i.e. exactly when messages would otherwise queue behind
the provider's limit. The waiting non-critical groups of that target (due within the horizon; quiet-hours holds are
left alone) are marked delivered-by-summary, and one summary goes out in their place: counts by severity and
alertname, every group named (the longest lists are split or cut with "+N more" like any message), a link to
Alertmanager. Critical groups are never folded into a summary: they still go out on their own. Later changes of the
summarised groups follow the normal rules.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from notifier.alertmanager import correct_alerts
from notifier.domain import (
    SEVERITY_RANK,
    ChangeRecord,
    Delivery,
    DeliveryState,
    EventKind,
    MessageKind,
    Severity,
    TimelineEvent,
)
from notifier.store import new_id
from notifier.store.repository import insert_own_notification, read_bodies
from notifier.store.tables import deliveries
from notifier.store.timeline import record

HORIZON = 300.0  # seconds: messages due within this are "waiting now"
MAX_NAMES = 8  # alert names spelled out in the summary's first line; the groups themselves follow below it


def _summary_alert(payload: dict[str, Any], group_hash: str) -> dict[str, Any]:
    alerts = payload.get("alerts", [])
    common = payload.get("commonLabels", {})
    firing = sum(1 for a in alerts if a.get("status") == "firing")
    labels = {k: v for k, v in common.items() if k in ("alertname", "severity", "bot", "symbol")}
    labels.setdefault("alertname", payload.get("groupLabels", {}).get("alertname", "alert"))
    labels.setdefault(
        "severity",
        max(
            (a["labels"].get("severity", "warning") for a in alerts),
            key=lambda s: -SEVERITY_RANK[Severity.of({"severity": s})],
            default="warning",
        ),
    )
    return {
        "status": "firing" if firing else "resolved",
        "labels": labels,
        "annotations": {"summary": f"{firing} firing, {len(alerts) - firing} resolved"},
        "startsAt": min((a["startsAt"] for a in alerts), default="0001-01-01T00:00:00Z"),
        "endsAt": "0001-01-01T00:00:00Z" if firing else max(a["endsAt"] for a in alerts),
        "generatorURL": "",
        "fingerprint": group_hash[:16],
    }


def collapse_storm(conn: Connection, target: str, now: float, threshold: int, *, timeline: bool = True) -> int:
    """Fold the target's waiting non-critical groups into one summary message if there are more than `threshold`.
    Returns how many groups were folded (0 when there is no storm). With `timeline`, each folded group's timeline
    says which summary took it."""
    rows = [
        dict(r)
        for r in conn.execute(
            select(deliveries).where(
                deliveries.c.target == target,
                deliveries.c.state == DeliveryState.PENDING.value,
                deliveries.c.kind == MessageKind.ALERT.value,
                deliveries.c.next_attempt_at <= now + HORIZON,
                deliveries.c.group_key.not_like("storm:%"),
            )
        ).mappings()
    ]
    waiting_summary = (
        conn.execute(
            select(deliveries).where(
                deliveries.c.target == target,
                deliveries.c.state == DeliveryState.PENDING.value,
                deliveries.c.group_key.like("storm:%"),
            )
        )
        .mappings()
        .first()
    )
    # a summary that still waits takes in whatever else comes to wait; otherwise a storm starts past the threshold
    if not rows or (waiting_summary is None and len(rows) <= threshold):
        return 0
    payloads = {
        i: msgspec.json.decode(body)
        for i, body in read_bodies(conn, {r["notification_id"] for r in rows}).items()
        if body is not None
    }
    fold = []
    for r in rows:
        payload = payloads.get(r["notification_id"])
        if payload is None:
            continue
        stale = ChangeRecord.decode(r["change"]).stale
        if stale:  # the group as it is, not as a peer's late copy told it
            payload = {**payload, "alerts": correct_alerts(payload.get("alerts", []), stale)}
        severity = Severity.of(payload.get("commonLabels", {}))
        if any(Severity.of(a.get("labels", {})) is Severity.CRITICAL for a in payload.get("alerts", [])):
            severity = Severity.CRITICAL
        if severity is not Severity.CRITICAL:
            fold.append((r, payload))
    if not fold or (waiting_summary is None and len(fold) <= 1):
        return 0
    previous: list[dict[str, Any]] = []
    if waiting_summary is not None:
        body = read_bodies(conn, [waiting_summary["notification_id"]]).get(waiting_summary["notification_id"])
        previous = msgspec.json.decode(body)["alerts"] if body else []
    first = fold[0][1]
    by_severity: dict[str, int] = {}
    by_name: dict[str, int] = {}
    alerts: list[dict[str, Any]] = []
    for a in previous:
        alerts.append(a)
        by_severity[a["labels"]["severity"]] = by_severity.get(a["labels"]["severity"], 0) + 1
        by_name[a["labels"]["alertname"]] = by_name.get(a["labels"]["alertname"], 0) + 1
    for r, payload in fold:
        a = _summary_alert(payload, r["group_hash"])
        alerts.append(a)
        by_severity[a["labels"]["severity"]] = by_severity.get(a["labels"]["severity"], 0) + 1
        by_name[a["labels"]["alertname"]] = by_name.get(a["labels"]["alertname"], 0) + 1

    def rank(severity: str) -> int:
        return SEVERITY_RANK[Severity.of({"severity": severity})]

    counts = ", ".join(f"{n} {s}" for s, n in sorted(by_severity.items(), key=lambda x: rank(x[0])))
    top = sorted(by_name.items(), key=lambda x: -x[1])
    names = ", ".join(f"{k} ×{v}" for k, v in top[:MAX_NAMES])
    if len(top) > MAX_NAMES:
        names += f" and {len(top) - MAX_NAMES} other alert names"
    worst = min((Severity.of(a["labels"]) for a in alerts), key=SEVERITY_RANK.__getitem__)
    group_key = f"storm:{target}:{new_id()}"
    summary = {
        "version": "4",
        "receiver": first.get("receiver", "storm"),
        "status": "firing",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "groupLabels": {"alertname": "AlertStorm"},
        "commonLabels": {"alertname": "AlertStorm", "severity": worst.value},
        "commonAnnotations": {"summary": f"{len(alerts)} alert groups at once: {counts}. {names}."},
        "externalURL": first.get("externalURL", ""),
        "alerts": alerts,
    }
    sid = insert_own_notification(
        conn,
        source="storm",
        group_key=group_key,
        status="firing",
        count=len(alerts),
        payload=msgspec.json.encode(summary).decode(),
        now=now,
    )
    ids = [r["id"] for r, _ in fold]
    conn.execute(
        update(deliveries)
        .where(deliveries.c.id.in_(ids))
        .values(
            state=DeliveryState.SENT.value,
            sent_at=now,
            updated_at=now,
            provider_ref=f"storm:{sid}",
            last_error=None,
            lease_owner=None,
            lease_until=None,
        )
    )
    if waiting_summary is not None:  # the waiting summary now shows every group folded so far
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == waiting_summary["id"])
            .values(notification_id=sid, updated_at=now, change=ChangeRecord(new=len(alerts)).encode())
        )
        if timeline:
            _tell_folded(conn, fold, waiting_summary["id"], target, len(alerts), now)
        return len(fold)
    r0 = fold[0][0]
    summary_message = Delivery.new(
        id=new_id(),
        notification_id=sid,
        receiver=r0["receiver"],
        target=target,
        channel=r0["channel"],
        group_key=group_key,
        group_hash=hashlib.sha256(group_key.encode()).hexdigest(),
        change=ChangeRecord(new=len(fold)),
        now=now,
    )
    conn.execute(deliveries.insert(), summary_message.row())
    if timeline:
        _tell_folded(conn, fold, summary_message.id, target, len(fold), now)
    return len(fold)


def _tell_folded(
    conn: Connection, fold: list[tuple[dict[str, Any], Any]], summary_id: str, target: str, groups: int, now: float
) -> None:
    record(
        conn,
        [
            TimelineEvent(
                id=new_id(),
                at=now,
                group_hash=r["group_hash"],
                group_key=r["group_key"],
                kind=EventKind.ATTEMPT,
                subject=target,
                outcome="folded",
                text=(
                    f"folded into the storm summary {summary_id} on {target}: {groups} groups waited at once behind "
                    "the provider's rate limit"
                ),
                notification_id=r["notification_id"],
                delivery_id=r["id"],
            )
            for r, _ in fold
        ],
    )
