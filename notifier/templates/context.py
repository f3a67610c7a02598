"""What a template sees: an alert group turned into plain values (titles, durations, links), the same for every
channel. Escaping is not done here but by each channel's environment, so templates cannot forget it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from notifier.domain import SEVERITY_RANK, Alert, AlertGroup, AlertStatus, Change, Message, Severity

SEVERITY_EMOJI = {Severity.CRITICAL: "🔴", Severity.WARNING: "🟠", Severity.INFO: "🔵"}
SEVERITY_COLOR = {Severity.CRITICAL: "#D32F2F", Severity.WARNING: "#F57C00", Severity.INFO: "#1976D2"}
RESOLVED_EMOJI = "✅"
RESOLVED_COLOR = "#2E7D32"
HIDDEN_LABELS = frozenset({"alertname", "severity", "bot", "symbol"})
MAX_LABELS = 8


def format_duration(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h {m}m" if m else f"{h}h"
    d, h = divmod(h, 24)
    return f"{d}d {h}h" if h else f"{d}d"


def silence_url(external_url: str, labels: dict[str, str]) -> str:
    if not external_url:
        return ""
    matchers = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{external_url.rstrip('/')}/#/silences/new?filter={quote('{' + matchers + '}', safe='')}"


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert as templates see it."""

    name: str
    status: str
    firing: bool
    severity: str
    emoji: str
    title: str
    summary: str
    description: str
    labels: dict[str, str]
    extra_labels: int
    all_labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str
    duration: str
    duration_text: str
    fingerprint: str
    graph_url: str
    runbook_url: str
    dashboard_url: str
    silence_url: str

    @property
    def links(self) -> list[tuple[str, str]]:
        return [
            (n, u)
            for n, u in (
                ("Graph", self.graph_url),
                ("Runbook", self.runbook_url),
                ("Dashboard", self.dashboard_url),
                ("Silence", self.silence_url),
            )
            if u
        ]


def alert_title(labels: dict[str, str]) -> str:
    name = labels.get("alertname", "Alert")
    where = " ".join(v for v in (labels.get("bot", ""), labels.get("symbol", "")) if v)
    return f"{name} · {where}" if where else name


def _ts(d: datetime | None) -> str:
    return d.strftime("%Y-%m-%d %H:%M:%S UTC") if d else ""


def alert_view(a: Alert, external_url: str, now: float) -> AlertView:
    firing = a.status is AlertStatus.FIRING
    start = a.starts_at.timestamp()
    if firing:
        dur = format_duration(now - start)
        text = f"firing for {dur}"
    else:
        end = a.ends_at.timestamp() if a.ends_at else now
        dur = format_duration(end - start)
        text = f"resolved after {dur}"
    shown = {k: v for k, v in sorted(a.labels.items()) if k not in HIDDEN_LABELS}
    extra = max(0, len(shown) - MAX_LABELS)
    sev = a.severity
    return AlertView(
        name=a.name,
        status=a.status.value,
        firing=firing,
        severity=sev.value,
        emoji=SEVERITY_EMOJI[sev] if firing else RESOLVED_EMOJI,
        title=alert_title(a.labels),
        summary=a.annotations.get("summary", ""),
        description=a.annotations.get("description", a.annotations.get("message", "")),
        labels=dict(list(shown.items())[:MAX_LABELS]),
        extra_labels=extra,
        all_labels=dict(a.labels),
        annotations=dict(a.annotations),
        starts_at=_ts(a.starts_at),
        ends_at=_ts(a.ends_at),
        duration=dur,
        duration_text=text,
        fingerprint=a.fingerprint,
        graph_url=a.generator_url,
        runbook_url=a.annotations.get("runbook_url", ""),
        dashboard_url=a.annotations.get("dashboard_url", ""),
        silence_url=silence_url(external_url, a.labels),
    )


def sort_alerts(alerts: tuple[Alert, ...]) -> list[Alert]:
    """Firing before resolved, most severe first, then by name and labels: the reader sees what matters first."""
    return sorted(
        alerts,
        key=lambda a: (
            a.status is not AlertStatus.FIRING,
            SEVERITY_RANK[a.severity],
            a.name,
            json.dumps(a.labels, sort_keys=True),
        ),
    )


def group_context(
    message: Message,
    now: float,
    alerts: list[AlertView] | None = None,
    *,
    detail: bool = True,
    part: int = 1,
    parts: int = 1,
    more: int = 0,
) -> dict[str, Any]:
    g: AlertGroup = message.group
    views = alerts if alerts is not None else [alert_view(a, g.external_url, now) for a in sort_alerts(g.alerts)]
    sev = g.severity
    firing = g.status is AlertStatus.FIRING
    ch: Change = message.change
    common = {k: v for k, v in g.labels_for_routing().items()}
    title_labels = common if "alertname" in common else (g.alerts[0].labels if g.alerts else {})
    n_firing = len(g.firing)
    n_resolved = len(g.resolved)
    return {
        "status": g.status.value,
        "firing": firing,
        "severity": sev.value,
        "emoji": SEVERITY_EMOJI[sev] if firing else RESOLVED_EMOJI,
        "color": SEVERITY_COLOR[sev] if firing else RESOLVED_COLOR,
        "title": alert_title(title_labels),
        "alertname": title_labels.get("alertname", "Alert"),
        "group_labels": dict(g.group_labels),
        "common_labels": dict(g.common_labels),
        # clipped: a group-wide summary must never alone push a message past a provider's limit
        "common_annotations": {k: (v if len(v) <= 600 else v[:599] + "…") for k, v in g.common_annotations.items()},
        "external_url": g.external_url,
        "alerts_url": g.external_url.rstrip("/") + "/#/alerts" if g.external_url else "",
        "alerts": views,
        "n_alerts": len(g.alerts),
        "n_firing": n_firing,
        "n_resolved": n_resolved,
        "truncated": g.truncated_alerts,
        "change": ch.describe(),
        "is_test": message.kind.value == "test",
        "silent": message.silent,
        "detail": detail,
        "part": part,
        "parts": parts,
        "more": more,
        "receiver": message.receiver,
    }
