"""What a decision means, in words: the sentences of a group's timeline (pure).

Each decision of the intake becomes an outcome a person can filter on and a sentence that says why, with the
parts of the configuration that made it: the route, the quiet-hours schedule and its window, the repeat interval,
the change.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from notifier.domain import AlertTimes, SuppressReason
from notifier.pipeline.decisions import DEFAULT_REPEAT_INTERVAL, QuietNow, ReceiverDecision, Verdict
from notifier.routing import RouteMatch
from notifier.templates.context import format_duration

UTC_ZONE = ZoneInfo("UTC")


class DecisionOutcome(StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    SILENT = "silent"
    COALESCED = "coalesced"
    DIGEST = "digest"
    UNCHANGED = "unchanged"
    ACKNOWLEDGED = "acknowledged"
    DROPPED = "dropped"


def clock(t: float, zone: ZoneInfo = UTC_ZONE) -> str:
    """ "2026-11-30 07:00" in the zone, the zone named unless it is UTC."""
    local = datetime.fromtimestamp(t, zone)
    suffix = "" if zone.key == "UTC" else f" {zone.key}"
    return local.strftime("%Y-%m-%d %H:%M") + suffix


def duplicate_text(holder: str, window: float) -> str:
    within = format_duration(window)
    return (
        f"duplicate of notification {holder}: the same alerts within dedup.redelivery_window ({within}), "
        "an HA peer's copy or a resend; nothing more to do"
    )


def stale_text(
    names: Mapping[str, str],
    stale: Mapping[str, AlertTimes],
    left_out: Mapping[str, AlertTimes] | None = None,
    zone: ZoneInfo = UTC_ZONE,
) -> str:
    """The timeline's line for a notification that carried stale copies: which alerts, and the newer state known;
    and how many alerts known to fire it left out (it was flushed before they fired)."""
    parts = []
    if left_out:
        since = clock_seconds(min(t.starts for t in left_out.values()), zone)
        what = "1 alert" if len(left_out) == 1 else f"{len(left_out)} alerts"
        parts.append(f"it leaves out {what} firing since {since}, flushed before it fired")
        if not stale:
            return "stale copy from an Alertmanager peer: " + parts[0] + " (the group still fires)"
    for fp, known in list(stale.items())[:5]:
        name = names.get(fp, fp)
        if known.ends is not None:
            parts.append(f"{name} resolved at {clock_seconds(known.ends, zone)} already known")
        else:
            parts.append(f"{name} firing again since {clock_seconds(known.starts, zone)} already known")
    more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
    return "stale copy from an Alertmanager peer: " + "; ".join(parts) + more + " (the older state is ignored)"


def clock_seconds(t: float, zone: ZoneInfo = UTC_ZONE) -> str:
    """ "03:12:05" in the zone, the zone named unless it is UTC."""
    suffix = "" if zone.key == "UTC" else f" {zone.key}"
    return datetime.fromtimestamp(t, zone).strftime("%H:%M:%S") + suffix


def decision_event(
    decision: ReceiverDecision,
    match: RouteMatch,
    quiet: QuietNow | None,
    zone: ZoneInfo,
    prior_sent_at: float | None,
    targets: list[str],
    coalesced_into: list[str],
) -> tuple[DecisionOutcome, str]:
    """The outcome and the sentence of one receiver's decision. `zone` is the quiet-hours schedule's, if any;
    `coalesced_into`: the waiting messages that took this state in."""
    route = "the root route" if match.route_path == "routes" else f"route {match.route_path}"
    change = decision.change.describe() or "no change"
    if decision.verdict is Verdict.SUPPRESS:
        repeat = match.repeat_interval if match.repeat_interval is not None else DEFAULT_REPEAT_INTERVAL
        every = f"repeat_interval {format_duration(repeat)}" if repeat else "repeat_interval 0: never repeated"
        if decision.reason is SuppressReason.QUIET_HOURS_DROP:
            assert quiet is not None
            return (
                DecisionOutcome.DROPPED,
                f"dropped: quiet hours '{quiet.schedule}' drop until {clock(quiet.until, zone)} ({route})",
            )
        if decision.reason is SuppressReason.ACKNOWLEDGED:
            return DecisionOutcome.ACKNOWLEDGED, f"not repeated: the group is acknowledged ({every}, {route})"
        since = f" since {clock(prior_sent_at)}" if prior_sent_at is not None else ""
        return DecisionOutcome.UNCHANGED, f"unchanged{since}: nothing new to tell ({change}; {every}, {route})"
    if decision.verdict is Verdict.DIGEST:
        why = f"quiet hours '{quiet.schedule}' in digest mode" if quiet is not None else "the route collects digests"
        return DecisionOutcome.DIGEST, f"into the receiver's next digest: {change} ({why}, {route})"
    to = ", ".join(targets) or "no target"
    if coalesced_into and len(coalesced_into) == len(targets):
        ids = ", ".join(coalesced_into)
        return DecisionOutcome.COALESCED, f"coalesced into waiting message {ids}: {change} ({route})"
    if decision.deferred and quiet is not None:
        return (
            DecisionOutcome.DEFERRED,
            f"deferred until {clock(quiet.until, zone)} (quiet hours '{quiet.schedule}', {route}): {change}, for {to}",
        )
    if decision.silent and quiet is not None:
        return (
            DecisionOutcome.SILENT,
            f"queued without sound (quiet hours '{quiet.schedule}', {route}): {change}, for {to}",
        )
    what = "repeat of a group still firing" if decision.repeat and not decision.change.new else change
    return DecisionOutcome.QUEUED, f"queued for {to}: {what} ({route})"
