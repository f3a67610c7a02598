"""The intake's decisions without a store: what a webhook means for one receiver (news, a repeat, nothing), what
quiet hours make of it, and how a waiting message takes in a newer state."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from notifier.domain import Change, ChangeRecord, Delivery, GroupState, Severity, SuppressReason
from notifier.pipeline.decisions import QuietNow, Verdict, coalesce, decide, quiet_hours_now
from notifier.schedules import Schedule
from notifier.settings import RouteQuietHours, ScheduleSettings

FIRING, RESOLVED = "firing", "resolved"
NOW = 10_000.0


def test_a_group_seen_first_is_queued_and_becomes_the_receivers_state() -> None:
    d = decide(None, {"a": FIRING}, NOW, repeat_interval=None, send_resolved=True, quiet=None, digest=False)
    assert d.verdict is Verdict.QUEUE
    assert d.change == Change(new=1)
    assert d.state == GroupState({"a": FIRING}, NOW)
    assert d.not_before == NOW and not d.silent and not d.deferred


def test_an_unchanged_resend_is_suppressed_and_leaves_the_state_alone() -> None:
    prior = GroupState({"a": FIRING}, NOW - 60)
    d = decide(prior, {"a": FIRING}, NOW, repeat_interval=3600.0, send_resolved=True, quiet=None, digest=False)
    assert (d.verdict, d.reason, d.state) == (Verdict.SUPPRESS, SuppressReason.UNCHANGED, None)


def test_a_firing_group_is_repeated_once_its_repeat_interval_passed() -> None:
    prior = GroupState({"a": FIRING}, NOW - 3600)
    d = decide(prior, {"a": FIRING}, NOW, repeat_interval=3600.0, send_resolved=True, quiet=None, digest=False)
    assert d.verdict is Verdict.QUEUE and d.repeat
    assert d.change_record().repeat and d.change_record().still_firing == 1
    # none (0) never repeats; the default is four hours
    never = decide(prior, {"a": FIRING}, NOW, repeat_interval=0.0, send_resolved=True, quiet=None, digest=False)
    assert never.verdict is Verdict.SUPPRESS
    assert (
        decide(prior, {"a": FIRING}, NOW, repeat_interval=None, send_resolved=True, quiet=None, digest=False).verdict
        is Verdict.SUPPRESS
    )


def test_a_resolve_kept_quiet_by_send_resolved_false_still_counts_for_the_next_firing() -> None:
    prior = GroupState({"a": FIRING}, NOW - 60)
    d = decide(prior, {"a": RESOLVED}, NOW, repeat_interval=3600.0, send_resolved=False, quiet=None, digest=False)
    assert d.verdict is Verdict.SUPPRESS
    assert d.state == GroupState({"a": RESOLVED}, NOW - 60)  # the time of the last message stays
    again = decide(d.state, {"a": FIRING}, NOW, repeat_interval=3600.0, send_resolved=False, quiet=None, digest=False)
    assert again.verdict is Verdict.QUEUE and again.change == Change(new=1)


def test_quiet_hours_defer_silence_drop_or_digest() -> None:
    until = NOW + 600

    def quiet(mode: str, skip: bool = False) -> Verdict | tuple[object, ...]:
        d = decide(
            None,
            {"a": FIRING},
            NOW,
            repeat_interval=None,
            send_resolved=True,
            quiet=QuietNow("night", mode, until, skip),  # type: ignore[arg-type]
            digest=False,
        )
        return d.verdict, d.reason, d.not_before, d.silent, d.deferred, d.skip_resolved, d.state is not None

    assert quiet("defer", True) == (Verdict.QUEUE, None, until, False, True, True, True)
    assert quiet("silent") == (Verdict.QUEUE, None, NOW, True, False, False, True)
    assert quiet("drop") == (Verdict.SUPPRESS, SuppressReason.QUIET_HOURS_DROP, 0.0, False, False, False, False)
    assert quiet("digest")[0] is Verdict.DIGEST
    # a route's digest wins over quiet hours that would only silence it
    d = decide(None, {"a": FIRING}, NOW, repeat_interval=None, send_resolved=True, quiet=None, digest=True)
    assert d.verdict is Verdict.DIGEST and d.state == GroupState({"a": FIRING}, NOW)


def test_quiet_hours_hold_only_inside_their_window_and_not_a_bypassing_severity() -> None:
    schedules = {
        "night": Schedule.from_settings(
            msgspec.convert({"location": "UTC", "times": [{"start": "22:00", "end": "07:00"}]}, ScheduleSettings)
        )
    }
    rule = RouteQuietHours(schedule="night", mode="defer")
    at_night = datetime(2026, 11, 30, 23, 0, tzinfo=UTC).timestamp()
    by_day = datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp()
    held = quiet_hours_now(rule, schedules, Severity.WARNING, at_night)
    assert held == QuietNow("night", "defer", datetime(2026, 12, 1, 7, 0, tzinfo=UTC).timestamp(), False)
    assert quiet_hours_now(rule, schedules, Severity.CRITICAL, at_night) is None  # critical bypasses by default
    assert quiet_hours_now(rule, schedules, Severity.WARNING, by_day) is None
    assert quiet_hours_now(None, schedules, Severity.WARNING, at_night) is None


def _message(change: ChangeRecord, *, at: float, silent: bool = False, not_before: float | None = None) -> Delivery:
    return Delivery.new(
        id=f"D{at:.0f}",
        notification_id=f"N{at:.0f}",
        receiver="ops",
        target="ops/telegram",
        channel="telegram",
        group_key="{}:{}",
        group_hash="g",
        change=change,
        now=at,
        silent=silent,
        not_before=not_before,
    )


def test_a_waiting_message_takes_in_the_newer_state_and_keeps_what_left_the_group() -> None:
    """Held by quiet hours: a fired, b fired and resolved, then Alertmanager's next notification lists only c. The
    catch-up is measured against the last delivery (nothing), and still shows b."""
    waiting = _message(ChangeRecord(base={}, new=2), at=NOW - 300, silent=True, not_before=NOW + 600)
    first_alerts = [{"fingerprint": "a", "status": FIRING}, {"fingerprint": "b", "status": RESOLVED}]
    prior = GroupState({"a": FIRING, "b": RESOLVED}, NOW - 300)
    current = {"a": FIRING, "c": FIRING}
    decision = decide(prior, current, NOW, repeat_interval=None, send_resolved=True, quiet=None, digest=False)
    fresh = _message(decision.change_record(), at=NOW, silent=False, not_before=NOW)
    merged = coalesce(waiting, fresh, current, first_alerts)
    change = ChangeRecord.decode(merged.change)
    assert merged.id == waiting.id and merged.created_at == waiting.created_at
    assert merged.notification_id == fresh.notification_id  # the newest state is told
    assert change.base == {} and [g["fingerprint"] for g in change.gone] == ["b"]
    assert change.counts() == Change(new=3, resolved=1)
    assert merged.next_attempt_at == NOW  # a first try goes at the earlier time
    assert not merged.silent  # silent only if both were


def test_a_retry_that_waits_keeps_its_back_off() -> None:
    waiting = msgspec.structs.replace(_message(ChangeRecord(base={}, new=1), at=NOW - 60), attempts=2)
    waiting = msgspec.structs.replace(waiting, next_attempt_at=NOW + 30)
    decision = decide(
        GroupState({"a": FIRING}, NOW - 60),
        {"a": FIRING, "b": FIRING},
        NOW,
        repeat_interval=None,
        send_resolved=True,
        quiet=None,
        digest=False,
    )
    merged = coalesce(waiting, _message(decision.change_record(), at=NOW), {"a": FIRING, "b": FIRING}, [])
    assert merged.attempts == 2 and merged.next_attempt_at == NOW + 30
    assert ChangeRecord.decode(merged.change).counts() == Change(new=2)
