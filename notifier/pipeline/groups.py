"""An alert group as /alerts, silences from the chat and the web view see it (the `alert_groups` record), made from
a webhook at intake: what tells it apart, who it routes to, how much of it fires and since when. Pure."""

from __future__ import annotations

import msgspec

from notifier.alertmanager import WebhookPayload
from notifier.domain import AlertStatus, AlertTimes, Severity
from notifier.matchers import MatchOp, parse_group_key
from notifier.pipeline.decisions import Ordered
from notifier.routing import RouteMatch
from notifier.store.actions import AlertGroupRecord


def group_record(
    payload: WebhookPayload, group_hash: str, severity: Severity, matches: list[RouteMatch]
) -> AlertGroupRecord:
    firing = [a.startsAt.timestamp() for a in payload.alerts if a.status == AlertStatus.FIRING.value]
    labels = shown_labels(payload)
    return AlertGroupRecord(
        group_hash=group_hash,
        am_receiver=payload.receiver,
        group_key=payload.groupKey,
        labels=labels,
        title=labels.get("alertname", ""),
        severity=severity,
        firing=len(firing),
        firing_since=min(firing) if firing else None,
        updated_at=0.0,
        receivers=sorted({m.receiver for m in matches}),
    )


def alert_names(raw: bytes, stale: dict[str, AlertTimes]) -> dict[str, str]:
    """fingerprint -> a short name of the alert (alertname and its first distinguishing label), for the stale ones."""
    out: dict[str, str] = {}
    for a in msgspec.json.decode(raw).get("alerts", []):
        fp = a.get("fingerprint", "")
        if fp in stale:
            labels = a.get("labels", {})
            extra = next((f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity")), "")
            out[fp] = " ".join(x for x in (labels.get("alertname", fp), extra) if x)
    return out


def as_ordered(group: AlertGroupRecord, times: dict[str, AlertTimes], ordered: Ordered) -> AlertGroupRecord:
    """The group's record with its stale copies corrected (and the firing alerts a copy left out counted): what
    /alerts and the web view list."""
    firing = [
        (ordered.stale.get(fp) or ordered.left_out.get(fp) or times[fp]).starts
        for fp, status in ordered.states.items()
        if status == AlertStatus.FIRING.value
    ]
    return msgspec.structs.replace(group, firing=len(firing), firing_since=min(firing) if firing else None)


def shown_labels(payload: WebhookPayload) -> dict[str, str]:
    """What tells a group apart in /alerts and the web view: the equality matchers of the route that made it (its
    team, say) and its group labels; the common labels for a group with neither."""
    try:
        key = parse_group_key(payload.groupKey)
    except ValueError:
        return dict(payload.groupLabels) or dict(payload.commonLabels)
    route = {m.name: m.value for m in key.route if m.op is MatchOp.EQ}
    return {**route, **payload.groupLabels} or dict(payload.commonLabels)
