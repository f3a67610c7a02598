"""What the operator sees of the store, the same through the API and the CLI: an outbox row as a view, and the
outbox as a table."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from notifier.clock import iso
from notifier.domain import ChangeRecord, Delivery, DeliveryState, MessageKind, TimelineEvent
from notifier.redaction import redact
from notifier.templates.context import format_duration


def delivery_view(row: Delivery) -> dict[str, Any]:
    change = ChangeRecord.decode(row.change)
    return {
        "id": row.id,
        "state": row.state.value,
        "receiver": row.receiver,
        "target": row.target,
        "channel": row.channel,
        "group_key": row.group_key,
        "notification_id": row.notification_id,
        "kind": row.kind.value,
        "silent": row.silent,
        "attempts": row.attempts,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "next_attempt_at": iso(row.next_attempt_at) if row.state == DeliveryState.PENDING else None,
        "sent_at": iso(row.sent_at),
        "last_error": redact(row.last_error) if row.last_error else row.last_error,
        "provider_ref": row.provider_ref,
        "change": {
            "new": change.new,
            "resolved": change.resolved,
            "still_firing": change.still_firing,
            "repeat": change.repeat,
        },
    }


_UNPRINTABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]")


def printable(text: str) -> str:
    """Text for a terminal: control characters (escape sequences that would move the cursor, retitle the window or
    clear the screen) and invisible or direction-changing characters shown as escapes, `\x1b`, `\u202e`."""

    def shown(m: re.Match[str]) -> str:
        code = ord(m.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _UNPRINTABLE.sub(shown, text)


def deliveries_table(rows: list[Delivery], now: float, state: str | None) -> str:
    """The outbox as a person reads it: a header, one line per delivery, and a line that says when there is none."""
    if not rows:
        return f"no {state} deliveries" if state else "no deliveries yet"
    header = ("ID", "STATE", "RECEIVER/TARGET", "ALERTNAME", "AGE", "ATTEMPTS", "LAST ERROR")
    lines: list[tuple[str, ...]] = [header]
    for r in rows:
        v = delivery_view(r)
        m = re.search(r'alertname="([^"]*)"', r.group_key)
        name = m.group(1) if m else ("(digest)" if r.kind is MessageKind.DIGEST else "")
        error = (v["last_error"] or "").replace("\n", " ")
        age = format_duration(now - r.created_at)
        cells = (v["id"], v["state"], v["target"], name[:40], age, str(v["attempts"]), error[:120])
        lines.append(tuple(printable(c) for c in cells))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1] for line in lines
    ).rstrip()


def event_view(e: TimelineEvent) -> dict[str, Any]:
    return {
        "at": iso(e.at),
        "kind": e.kind.value,
        "subject": e.subject,
        "outcome": e.outcome,
        "text": redact(e.text),
        "notification_id": e.notification_id,
        "delivery_id": e.delivery_id,
    }


def timeline_view(group_hash: str, events: list[TimelineEvent]) -> dict[str, Any]:
    return {
        "group_hash": group_hash,
        "group_key": events[-1].group_key if events else "",
        "events": [event_view(e) for e in events],
    }


def timeline_text(group_hash: str, events: list[TimelineEvent], zone: str = "UTC") -> str:
    """A group's timeline as the terminal shows it: one line per event, its time, what, about whom, and why."""
    if not events:
        return f"group {group_hash}: nothing recorded"
    tz = ZoneInfo(zone)
    lines = [f"group {printable(events[-1].group_key)}  ({printable(group_hash)})"]
    for e in events:
        when = datetime.fromtimestamp(e.at, tz).strftime("%Y-%m-%d %H:%M:%S")
        who = f"{printable(e.subject)}: " if e.subject else ""
        lines.append(f"{when}  {e.kind.value:<8} {e.outcome:<12} {who}{printable(redact(e.text))}")
    return "\n".join(lines)
