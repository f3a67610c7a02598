"""The intake's decisions, as plain functions over typed values: what a webhook means for one receiver (news, a
repeat, or nothing new), what quiet hours make of it, and how a message that still waits takes in the newer state.
No I/O and no clock here: the state they decide on and `now` are arguments, so each is tested without a store."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgspec

from notifier.changes import diff_states, fold_changes
from notifier.domain import (
    AlertStatus,
    AlertTimes,
    Change,
    ChangeRecord,
    Delivery,
    GroupLifecycles,
    GroupState,
    Severity,
    SuppressReason,
)
from notifier.schedules import Schedule
from notifier.settings import QuietMode, RouteQuietHours

DEFAULT_REPEAT_INTERVAL = 4 * 3600.0
_FIRING = AlertStatus.FIRING.value
_RESOLVED = AlertStatus.RESOLVED.value


LIFECYCLE_MEMORY = 86400.0  # seconds an alert's lifecycle is remembered after it left the group's notifications


def is_stale(incoming: AlertTimes, known: AlertTimes) -> bool:
    """Whether an alert's state is older than the one known for its fingerprint. Alertmanager starts a re-fired
    alert after the end of its previous instance, so: a firing state that did not start after a known end is that
    resolution's past; a resolution that ended before the known firing started, or of an instance that started
    before the known one, is an earlier instance's. Two firing states are never stale (nothing flips)."""
    if incoming.ends is None:
        return known.ends is not None and incoming.starts <= known.ends
    if known.ends is None:
        return incoming.ends < known.starts
    return incoming.starts < known.starts


def _newest(known: AlertTimes | None, incoming: AlertTimes) -> AlertTimes:
    """The lifecycle to keep once `incoming` is not stale: the later start of two firing states, the later end of
    one resolution told twice."""
    if known is None or (known.ends is None) != (incoming.ends is None):
        return incoming
    if known.ends is None or incoming.ends is None:
        return known if known.starts >= incoming.starts else incoming
    if known.starts == incoming.starts:
        return AlertTimes(known.starts, max(known.ends, incoming.ends))
    return incoming


@dataclass(frozen=True, slots=True)
class Ordered:
    """A notification's alerts measured against what is known of the group (`order_states`)."""

    states: dict[str, str]  # fingerprint -> status: the group's state this notification tells, stale copies corrected
    stale: dict[str, AlertTimes]  # fingerprint -> the newer lifecycle known, for each alert that came as a stale copy
    lifecycles: GroupLifecycles  # what is known of the group once this notification counts
    changes_state: bool  # whether it tells the group in another state than the newest notification that counted
    # fingerprint -> lifecycle, of alerts known to fire that the notification leaves out although everything it
    # tells is older than their start: it was flushed before they fired, and they still fire (see order_states)
    left_out: dict[str, AlertTimes] = dataclasses.field(default_factory=dict)


def order_states(
    prior: GroupLifecycles | None, incoming: Mapping[str, AlertTimes], now: float, told: Mapping[str, str]
) -> Ordered:
    """Per alert, the newer of the state this notification tells (`told`, as `incoming` times it) and the state
    known: an Alertmanager peer can send a group's older state after a newer one (it flushed before the other
    peer's resolution reached it), and such a copy must not take the group back. Alerts that left the notifications
    are remembered for LIFECYCLE_MEMORY.

    An alert known to fire that the notification leaves out has left the group's notifications (muted, say),
    unless everything the notification tells is older than that alert's start: then the peer flushed before the
    alert fired, and it still fires. Alertmanager drops an alert from a group's notifications only once it told it
    resolved, or when it is silenced or inhibited; a copy that predates the alert cannot say either."""
    if prior is None:  # a group seen for the first time: nothing to order against
        states = dict(told)
        return Ordered(states, {}, GroupLifecycles(known=dict(incoming)), True)
    known = dict(prior.known)
    states = {}
    stale: dict[str, AlertTimes] = {}
    for fp, times in incoming.items():
        was = known.get(fp)
        if was is not None and is_stale(times, was):
            stale[fp] = was
            states[fp] = was.status
        else:
            known[fp] = _newest(was, times)
            states[fp] = told[fp]
    forget = now - LIFECYCLE_MEMORY
    before = prior.current()
    left = {fp: at for fp, at in prior.left.items() if fp not in incoming and at > forget}
    newest_told = max((t.starts if t.ends is None else t.ends for t in incoming.values()), default=float("-inf"))
    left_out: dict[str, AlertTimes] = {}
    for fp in before:
        if fp not in incoming:
            was = known[fp]
            if was.ends is None and was.starts > newest_told:
                left_out[fp] = was
                states[fp] = was.status
            else:
                left.setdefault(fp, now)
    kept = {fp: t for fp, t in known.items() if fp in incoming or fp in left or fp in left_out}
    return Ordered(states, stale, GroupLifecycles(known=kept, left=left), states != before, left_out)


@dataclass(frozen=True, slots=True)
class QuietNow:
    """A quiet-hours window that holds a group now: what the route does in it, and when it ends."""

    schedule: str
    mode: QuietMode
    until: float
    skip_resolved: bool


def quiet_hours_now(
    rule: RouteQuietHours | None, schedules: Mapping[str, Schedule], severity: Severity, now: float
) -> QuietNow | None:
    """The route's quiet hours if their schedule is in a window at `now` and the group's severity does not bypass
    them."""
    if rule is None or severity.value in rule.bypass_severities:
        return None
    window = schedules[rule.schedule].active_window(now)
    if window is None:
        return None
    return QuietNow(rule.schedule, rule.mode, window[1], rule.skip_resolved)


class Verdict(StrEnum):
    QUEUE = "queue"  # a message to each of the receiver's targets
    DIGEST = "digest"  # into the receiver's next email digest
    SUPPRESS = "suppress"  # nothing to send (the reason says why)


@dataclass(frozen=True, slots=True)
class ReceiverDecision:
    """What one webhook means for one receiver."""

    verdict: Verdict
    change: Change  # against the state last committed for delivery
    base: dict[str, str]  # that state: fingerprint -> status
    state: GroupState | None  # what the receiver's group state becomes; None: left as it is
    reason: SuppressReason | None = None
    repeat: bool = False  # an unchanged firing group whose repeat interval passed
    silent: bool = False  # quiet hours 'silent': delivered without a sound
    not_before: float = 0.0  # quiet hours 'defer': held until the window ends
    deferred: bool = False
    skip_resolved: bool = False  # deferred with skip_resolved: no catch-up if it fired and resolved inside

    def change_record(self, stale: dict[str, AlertTimes] | None = None) -> ChangeRecord:
        """What a message for this decision stores of it; `stale`: the notification's alerts that came as stale
        copies, with the newer lifecycle the message shows instead."""
        return ChangeRecord(
            base=self.base,
            repeat=self.repeat and not self.change.new,
            skip_if_resolved=self.skip_resolved,
            stale=stale or {},
        ).with_counts(self.change)


def decide(
    prior: GroupState | None,
    current: dict[str, str],
    now: float,
    *,
    repeat_interval: float | None,
    send_resolved: bool,
    quiet: QuietNow | None,
    digest: bool,
    acked: bool = False,
) -> ReceiverDecision:
    """Per-receiver dedup, repeats and quiet hours for a group whose alerts are now `current` (fingerprint ->
    status), given what was last committed for delivery to this receiver (`prior`). A group someone acknowledged
    from the chat is not repeated until it changes."""
    base = prior.alerts if prior is not None else {}
    change = diff_states(base, current)
    repeat = DEFAULT_REPEAT_INTERVAL if repeat_interval is None else repeat_interval
    repeat_due = prior is not None and repeat > 0 and change.still_firing > 0 and now - prior.last_sent_at >= repeat
    if repeat_due and acked and not change.new and not (change.resolved and send_resolved):
        return ReceiverDecision(Verdict.SUPPRESS, change, base, None, reason=SuppressReason.ACKNOWLEDGED)
    if not (change.new or (change.resolved and send_resolved) or repeat_due):
        # Not sent. A resolve that send_resolved: false keeps quiet is still recorded: the next firing must count
        # as new.
        state = None
        if change.resolved:
            state = GroupState(current, prior.last_sent_at if prior is not None else now)
        return ReceiverDecision(Verdict.SUPPRESS, change, base, state, reason=SuppressReason.UNCHANGED)
    sent = GroupState(current, now)
    if quiet is not None and quiet.mode == "drop":
        return ReceiverDecision(Verdict.SUPPRESS, change, base, None, reason=SuppressReason.QUIET_HOURS_DROP)
    if digest or (quiet is not None and quiet.mode == "digest"):
        return ReceiverDecision(Verdict.DIGEST, change, base, sent)
    deferred = quiet is not None and quiet.mode == "defer"
    return ReceiverDecision(
        Verdict.QUEUE,
        change,
        base,
        sent,
        repeat=repeat_due,
        silent=quiet is not None and quiet.mode == "silent",
        not_before=quiet.until if quiet is not None and deferred else now,
        deferred=deferred,
        skip_resolved=deferred and quiet is not None and quiet.skip_resolved,
    )


def coalesce(
    waiting: Delivery,
    fresh: Delivery,
    current: Mapping[str, str],
    waiting_alerts: list[dict[str, Any]],
) -> Delivery:
    """`fresh`, the message a webhook would queue, taken into `waiting`, a message of the same group to the same
    target that has not gone out yet: one message with the newest state. It keeps the waiting message's base, so
    that the catch-up tells everything since the last delivery, and carries the alerts that left the group meanwhile
    (fired and resolved while held: Alertmanager drops resolved alerts from later notifications). `waiting_alerts`
    are the alerts of the waiting message's notification. A retry keeps its back-off; a first try goes at the
    earlier of the two times."""
    change = fold_changes(
        ChangeRecord.decode(waiting.change), waiting_alerts, ChangeRecord.decode(fresh.change), current
    )
    return msgspec.structs.replace(
        fresh,
        id=waiting.id,
        attempts=waiting.attempts,
        created_at=waiting.created_at,
        silent=fresh.silent and waiting.silent,
        change=change.encode(),
        next_attempt_at=(
            min(fresh.next_attempt_at, waiting.next_attempt_at) if waiting.attempts == 0 else waiting.next_attempt_at
        ),
    )
