"""What a template sees: an alert group turned into plain values (titles, durations, links), the same for every
channel. Escaping is not done here but by each channel's environment, so templates cannot forget it; what is done
here is bounding and cleaning the untrusted text (see `safety`), so that every channel gets the same safe values."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from notifier.domain import SEVERITY_RANK, Alert, AlertGroup, AlertStatus, Change, GroupActions, Message, Severity
from notifier.templates.safety import clean, clip, one_line, safe_url

SEVERITY_EMOJI = {Severity.CRITICAL: "🔴", Severity.WARNING: "🟠", Severity.INFO: "🔵"}
SEVERITY_COLOR = {Severity.CRITICAL: "#D32F2F", Severity.WARNING: "#F57C00", Severity.INFO: "#1976D2"}
RESOLVED_EMOJI = "✅"
RESOLVED_COLOR = "#2E7D32"
HIDDEN_LABELS = frozenset({"alertname", "severity", "bot", "symbol"})
MAX_LABELS = 8
# Every field is bounded, so that one alert in its short form always fits a message of any provider.
MAX_TITLE = 200
MAX_LABEL_KEY = 60
MAX_LABEL_VALUE = 200
MAX_SUMMARY = 400
MAX_DESCRIPTION = 1200
MAX_ANNOTATION = 1200
MAX_COMMON_SUMMARY = 600


def plural(n: int, word: str) -> str:
    """ "1 receiver", "2 receivers" (the notifier's nouns all take an s)."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


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


def _filter(labels: dict[str, str]) -> str:
    matchers = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return quote("{" + matchers + "}", safe="")


def silence_url(external_url: str, labels: dict[str, str]) -> str:
    """Alertmanager's form for a new silence, filled in with these labels ('' when it is not a safe link)."""
    base = safe_url(external_url)
    return safe_url(f"{base.rstrip('/')}/#/silences/new?filter={_filter(labels)}") if base else ""


def group_url(external_url: str, labels: dict[str, str]) -> str:
    """Alertmanager's view of the alerts with these labels: where a group's alerts past a message's limit are."""
    base = safe_url(external_url)
    if not base:
        return ""
    return safe_url(f"{base.rstrip('/')}/#/alerts?filter={_filter(labels)}") or f"{base.rstrip('/')}/#/alerts"


def _bounded(fields: dict[str, str], key_limit: int, value_limit: int) -> dict[str, str]:
    return {clip(one_line(k), key_limit): clip(one_line(v), value_limit) for k, v in fields.items()}


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
    """`alertname · bot symbol`, cleaned and bounded."""
    name = labels.get("alertname", "Alert")
    where = " ".join(v for v in (labels.get("bot", ""), labels.get("symbol", "")) if v)
    return clip(one_line(f"{name} · {where}" if where else name), MAX_TITLE) or "Alert"


def _ts(d: datetime | None) -> str:
    return d.strftime("%Y-%m-%d %H:%M:%S UTC") if d else ""


def _was(text: str, firing: bool) -> str:
    """An annotation of a resolved alert describes what was, not what is."""
    return text if firing or not text else f"was: {text}"


def alert_view(a: Alert, external_url: str, now: float, hidden: frozenset[str] = frozenset()) -> AlertView:
    firing = a.status is AlertStatus.FIRING
    start = a.starts_at.timestamp()
    if firing:
        dur = format_duration(now - start)
        text = f"firing for {dur}"
    else:
        end = a.ends_at.timestamp() if a.ends_at else now
        dur = format_duration(end - start)
        text = f"resolved after {dur}"
    shown = {k: v for k, v in sorted(a.labels.items()) if k not in HIDDEN_LABELS and k not in hidden}
    extra = max(0, len(shown) - MAX_LABELS)
    sev = a.severity
    ann = a.annotations
    return AlertView(
        name=clip(one_line(a.name), MAX_TITLE),
        status=a.status.value,
        firing=firing,
        severity=sev.value,
        emoji=SEVERITY_EMOJI[sev] if firing else RESOLVED_EMOJI,
        title=alert_title(a.labels),
        summary=_was(clip(one_line(ann.get("summary", "")), MAX_SUMMARY), firing),
        description=_was(clip(clean(ann.get("description", ann.get("message", ""))).strip(), MAX_DESCRIPTION), firing),
        labels=_bounded(dict(list(shown.items())[:MAX_LABELS]), MAX_LABEL_KEY, MAX_LABEL_VALUE),
        extra_labels=extra,
        all_labels=_bounded(a.labels, MAX_LABEL_KEY, MAX_LABEL_VALUE),
        annotations=_bounded(ann, MAX_LABEL_KEY, MAX_ANNOTATION),
        starts_at=_ts(a.starts_at),
        ends_at=_ts(a.ends_at),
        duration=dur,
        duration_text=text,
        fingerprint=clip(one_line(a.fingerprint), 64),
        graph_url=safe_url(a.generator_url),
        runbook_url=safe_url(ann.get("runbook_url", "")),
        dashboard_url=safe_url(ann.get("dashboard_url", "")),
        silence_url=silence_url(external_url, a.labels),
    )


def _importance(a: Alert) -> tuple[bool, int, str, list[tuple[str, str]]]:
    return (a.status is not AlertStatus.FIRING, SEVERITY_RANK[a.severity], a.name, sorted(a.labels.items()))


def sort_alerts(alerts: tuple[Alert, ...], limit: int | None = None) -> list[Alert]:
    """Firing before resolved, most severe first, then by name and labels: the reader sees what matters first.
    With `limit`, only the first `limit` of that order (a partial sort: a huge group costs little more than its
    walk)."""
    if limit is not None and limit < len(alerts):
        return heapq.nsmallest(limit, alerts, key=_importance)
    return sorted(alerts, key=_importance)


def _counts(firing: int, resolved: int) -> str:
    """ "2 firing", "2 resolved", "1 firing, 1 resolved": no count of nothing."""
    return ", ".join(f"{n} {word}" for n, word in ((firing, "firing"), (resolved, "resolved")) if n)


def _status_line(ch: Change, firing: int, resolved: int) -> str:
    """What changed, then how the group stands where the change alone does not say it: "2 new", "1 resolved · 1
    firing, 1 resolved"; for a lone alert without a change, nothing (its own line says it)."""
    change = ch.describe()
    if change and ch.new + ch.still_firing == firing and ch.resolved == resolved:
        return change
    if change:
        return f"{change} · {_counts(firing, resolved)}"
    return _counts(firing, resolved) if firing + resolved > 1 else ""


def clock_time(t: float, zone: str) -> str:
    return datetime.fromtimestamp(t, ZoneInfo(zone)).strftime("%H:%M")


def action_lines(state: GroupActions, zone: str, now: float) -> list[tuple[str, str | None]]:
    """What a message shows of its group's acknowledgement and silence from the chat: (text, link or None)."""
    lines: list[tuple[str, str | None]] = []
    if state.acked_by and state.acked_at is not None:
        lines.append((f"✅ acknowledged by {clean(state.acked_by)} at {clock_time(state.acked_at, zone)}", None))
    if state.silenced_until is not None and state.silenced_until > now:
        by = f" by {clean(state.silenced_by)}" if state.silenced_by else ""
        url = safe_url(state.silence_url) if state.silence_url else ""
        lines.append((f"🔕 silenced until {clock_time(state.silenced_until, zone)}{by}", url or None))
    return lines


def group_context(
    message: Message, now: float, *, max_alerts: int | None = None, hidden: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The group-wide values of one message, computed once per message (each walks the whole group), with
    `alerts` its first `max_alerts` alerts in reading order and `unlisted` the number of the others; labels in
    `hidden` are not shown."""
    g: AlertGroup = message.group
    views = [alert_view(a, g.external_url, now, hidden) for a in sort_alerts(g.alerts, max_alerts)]
    sev = g.severity
    firing = g.status is AlertStatus.FIRING
    ch: Change = message.change
    common = g.labels_for_routing()
    title_labels = common if "alertname" in common else (g.alerts[0].labels if g.alerts else {})
    n_firing = sum(1 for a in g.alerts if a.status is AlertStatus.FIRING)
    annotations = _bounded(g.common_annotations, MAX_LABEL_KEY, MAX_ANNOTATION)
    if "summary" in annotations:
        annotations["summary"] = _was(clip(annotations["summary"], MAX_COMMON_SUMMARY), firing)
    external = safe_url(g.external_url)
    return {
        "status": g.status.value,
        "firing": firing,
        "severity": sev.value,
        "emoji": SEVERITY_EMOJI[sev] if firing else RESOLVED_EMOJI,
        "color": SEVERITY_COLOR[sev] if firing else RESOLVED_COLOR,
        "title": alert_title(title_labels),
        "alertname": clip(one_line(title_labels.get("alertname", "Alert")), MAX_TITLE),
        "group_labels": _bounded(g.group_labels, MAX_LABEL_KEY, MAX_LABEL_VALUE),
        "common_labels": _bounded(g.common_labels, MAX_LABEL_KEY, MAX_LABEL_VALUE),
        "common_annotations": annotations,
        "external_url": external,
        "alerts_url": external.rstrip("/") + "/#/alerts" if external else "",
        "group_url": group_url(external, dict(g.group_labels)),
        "group_silence_url": silence_url(external, dict(g.group_labels)) if firing else "",
        "alerts": views,
        "unlisted": len(g.alerts) - len(views),
        "n_alerts": len(g.alerts),
        "n_firing": n_firing,
        "n_resolved": len(g.alerts) - n_firing,
        "counts": _counts(n_firing, len(g.alerts) - n_firing),
        "truncated": g.truncated_alerts,
        "change": ch.describe(),
        "status_line": _status_line(ch, n_firing, len(g.alerts) - n_firing),
        "is_test": message.kind.value == "test",
        "silent": message.silent,
        "detail": True,
        "part": 1,
        "parts": 1,
        "more": len(g.alerts) - len(views),
        "receiver": message.receiver,
        "action_lines": ([(clean(message.note), None)] if message.note else [])
        + action_lines(message.actions, message.action_zone, now),
    }
