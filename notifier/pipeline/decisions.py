"""The intake's decisions, as plain functions over typed values: what a webhook means for one receiver (news, a
repeat, or nothing new), what quiet hours make of it, and how a message that still waits takes in the newer state.
No I/O and no clock here: the state they decide on and `now` are arguments, so each is tested without a store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgspec

from notifier.domain import AlertStatus, Change, ChangeRecord, Delivery, GroupState, Severity, SuppressReason
from notifier.schedules import Schedule
from notifier.settings import QuietMode, RouteQuietHours

DEFAULT_REPEAT_INTERVAL = 4 * 3600.0
_FIRING = AlertStatus.FIRING.value
_RESOLVED = AlertStatus.RESOLVED.value


def diff_states(base: Mapping[str, str], current: Mapping[str, str]) -> Change:
    """What changed from `base` (fingerprint -> status last committed) to `current`: alerts that fire anew (or fired
    and resolved without ever being told), alerts resolved since, and alerts still firing. A group seen for the
    first time and a group unchanged since are counted without a loop in Python: a 100-alert group is diffed on
    every webhook."""
    if not base or base == current:
        statuses = list(current.values())
        firing, ended = statuses.count(_FIRING), statuses.count(_RESOLVED)
        if not base:  # every alert is news; a resolved one is both new and resolved (never told it fired)
            return Change(new=firing + ended, resolved=ended)
        return Change(still_firing=firing)
    new = resolved = still = 0
    for fp, status in current.items():
        before = base.get(fp)
        if status == _FIRING:
            if before == _FIRING:
                still += 1
            else:
                new += 1
        elif status == _RESOLVED:
            if before != _RESOLVED:
                resolved += 1
            if before is None:
                new += 1
    return Change(new=new, resolved=resolved, still_firing=still)


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

    def change_record(self) -> ChangeRecord:
        """What a message for this decision stores of it."""
        return ChangeRecord(
            base=self.base, repeat=self.repeat and not self.change.new, skip_if_resolved=self.skip_resolved
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
    decision: ReceiverDecision,
    current: Mapping[str, str],
    waiting_alerts: list[dict[str, Any]],
) -> Delivery:
    """`fresh`, the message a webhook would queue, taken into `waiting`, a message of the same group to the same
    target that has not gone out yet: one message with the newest state. It keeps the waiting message's base, so
    that the catch-up tells everything since the last delivery, and carries the alerts that left the group meanwhile
    (fired and resolved while held: Alertmanager drops resolved alerts from later notifications). `waiting_alerts`
    are the alerts of the waiting message's notification. A retry keeps its back-off; a first try goes at the
    earlier of the two times."""
    old = ChangeRecord.decode(waiting.change)
    known = {g["fingerprint"] for g in old.gone}
    gone = [g for g in old.gone if g["fingerprint"] not in current] + [
        a for a in waiting_alerts if a["fingerprint"] not in current and a["fingerprint"] not in known
    ]
    base = old.base if old.base is not None else decision.base
    with_gone = {**{g["fingerprint"]: _RESOLVED for g in gone}, **current}
    change = ChangeRecord(
        base=base, gone=gone, skip_if_resolved=old.skip_if_resolved and decision.skip_resolved
    ).with_counts(diff_states(base, with_gone))
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
