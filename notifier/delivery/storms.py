"""Alert storms: when more than `storm.threshold` groups wait for one target, they become one summary message.

The check runs when the rate limiter turns a message away, i.e. exactly when messages would otherwise queue behind
the provider's limit. The waiting non-critical groups of that target (due within the horizon; quiet-hours holds are
left alone) are marked delivered-by-summary, and one summary goes out in their place: counts by severity and
alertname, every group named (the longest lists are split or cut with "+N more" like any message), a link to
Alertmanager. Critical groups are never folded into a summary: they still go out on their own. Later changes of the
summarised groups follow the normal rules.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from notifier.alertmanager import correct_alerts
from notifier.domain import SEVERITY_RANK, ChangeRecord, Delivery, Severity
from notifier.store import new_id
from notifier.store import storms as stored

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
    found = stored.waiting(conn, target, now + HORIZON)
    # a summary that still waits takes in whatever else comes to wait; otherwise a storm starts past the threshold
    if not found.messages or (found.summary is None and len(found.messages) <= threshold):
        return 0
    fold = []
    for message, payload in found.messages:
        stale = ChangeRecord.decode(message.change).stale
        if stale:  # the group as it is, not as a peer's late copy told it
            payload = {**payload, "alerts": correct_alerts(payload.get("alerts", []), stale)}
        severity = Severity.of(payload.get("commonLabels", {}))
        if any(Severity.of(a.get("labels", {})) is Severity.CRITICAL for a in payload.get("alerts", [])):
            severity = Severity.CRITICAL
        if severity is not Severity.CRITICAL:
            fold.append((message, payload))
    if not fold or (found.summary is None and len(fold) <= 1):
        return 0
    summary = _summary_payload(target, fold, found.summary_alerts)
    stored.fold(conn, target, [m for m, _ in fold], summary, found.summary, now, timeline=timeline)
    return len(fold)


def _summary_payload(
    target: str, fold: list[tuple[Delivery, dict[str, Any]]], previous: list[dict[str, Any]]
) -> dict[str, Any]:
    """The summary as an Alertmanager payload: one alert per group (the groups a waiting summary told already, then
    the new ones; a group it told already and that changed since is shown as it is now, once), counts by severity
    and alert name in its annotation."""
    by_severity: dict[str, int] = {}
    by_name: dict[str, int] = {}
    newest: dict[str, dict[str, Any]] = {}  # by the group's fingerprint: a newer state replaces the line in place
    for a in [*previous, *(_summary_alert(p, m.group_hash) for m, p in fold)]:
        newest[a["fingerprint"]] = a
    alerts = list(newest.values())
    for a in alerts:
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
    first = fold[0][1]
    return {
        "version": "4",
        "receiver": first.get("receiver", "storm"),
        "status": "firing",
        "groupKey": f"{stored.SUMMARY_PREFIX}{target}:{new_id()}",
        "truncatedAlerts": 0,
        "groupLabels": {"alertname": "AlertStorm"},
        "commonLabels": {"alertname": "AlertStorm", "severity": worst.value},
        "commonAnnotations": {"summary": f"{len(alerts)} alert groups at once: {counts}. {names}."},
        "externalURL": first.get("externalURL", ""),
        "alerts": alerts,
    }
