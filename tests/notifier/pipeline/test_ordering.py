"""Ordering a group's states per alert: a late copy from an Alertmanager peer never takes the group back."""

from __future__ import annotations

from notifier.domain import AlertTimes, GroupLifecycles
from notifier.pipeline.decisions import LIFECYCLE_MEMORY, Ordered, is_stale, order_states

FIRING, RESOLVED = "firing", "resolved"
NOW = 1_000_000.0
S, E, S2 = 1000.0, 2000.0, 3000.0  # an alert started at S, resolved at E, fired again at S2


def order(prior: GroupLifecycles | None, incoming: dict[str, AlertTimes], now: float) -> Ordered:
    """order_states with the states the notification tells read from its times, as summarize gives them."""
    return order_states(prior, incoming, now, {fp: t.status for fp, t in incoming.items()})


def test_a_firing_copy_that_started_before_a_known_resolution_is_stale() -> None:
    assert is_stale(AlertTimes(S), AlertTimes(S, E))
    assert is_stale(AlertTimes(E), AlertTimes(S, E))  # "not later than" the end
    assert not is_stale(AlertTimes(S2), AlertTimes(S, E))  # fired again after it ended


def test_a_resolution_of_an_earlier_instance_is_stale() -> None:
    assert is_stale(AlertTimes(S, E), AlertTimes(S2))  # it ended before the known firing began
    assert is_stale(AlertTimes(S, E), AlertTimes(S2, S2 + 10))
    assert not is_stale(AlertTimes(S, E), AlertTimes(S))  # the firing it ends
    assert not is_stale(AlertTimes(S, E + 5), AlertTimes(S, E))  # the same resolution, told again later


def test_two_firing_states_are_never_stale() -> None:
    assert not is_stale(AlertTimes(S), AlertTimes(S2))
    assert not is_stale(AlertTimes(S2), AlertTimes(S))


def test_the_late_firing_copy_leaves_the_group_resolved_and_says_which_alert() -> None:
    first = order(None, {"a": AlertTimes(S), "b": AlertTimes(S)}, NOW)
    assert first.states == {"a": FIRING, "b": FIRING} and first.changes_state and not first.stale
    resolved = order(first.lifecycles, {"a": AlertTimes(S, E), "b": AlertTimes(S, E)}, NOW + 1)
    assert resolved.states == {"a": RESOLVED, "b": RESOLVED} and resolved.changes_state
    # peer 1's copy of an in-between state: a resolved a little earlier, b still firing
    late = order(resolved.lifecycles, {"a": AlertTimes(S, E - 8), "b": AlertTimes(S)}, NOW + 2)
    assert late.states == {"a": RESOLVED, "b": RESOLVED}
    assert late.stale == {"b": AlertTimes(S, E)}
    assert not late.changes_state
    # the resolution known keeps its end: the earlier end told late does not replace it
    assert late.lifecycles.known["a"] == AlertTimes(S, E)


def test_a_real_new_firing_counts() -> None:
    resolved = order(None, {"a": AlertTimes(S, E)}, NOW)
    again = order(resolved.lifecycles, {"a": AlertTimes(S2)}, NOW + 1)
    assert again.states == {"a": FIRING} and again.changes_state and not again.stale


def test_an_alert_that_left_the_notifications_is_remembered_then_forgotten() -> None:
    both = order(None, {"a": AlertTimes(S, E), "b": AlertTimes(S)}, NOW)
    only_b = order(both.lifecycles, {"b": AlertTimes(S)}, NOW + 10)
    assert only_b.lifecycles.left == {"a": NOW + 10}
    # within the memory a stale copy of a is still recognised
    late = order(only_b.lifecycles, {"a": AlertTimes(S), "b": AlertTimes(S)}, NOW + 20)
    assert late.stale == {"a": AlertTimes(S, E)}
    # after it, a is unknown: nothing to hold against it, and it is not kept
    later = order(only_b.lifecycles, {"b": AlertTimes(S)}, NOW + 10 + LIFECYCLE_MEMORY + 1)
    assert "a" not in later.lifecycles.known and not later.lifecycles.left


def test_a_state_that_differs_from_the_newest_counts_as_a_change() -> None:
    ab = order(None, {"a": AlertTimes(S), "b": AlertTimes(S)}, NOW)
    a_only = order(ab.lifecycles, {"a": AlertTimes(S)}, NOW + 1)
    assert a_only.changes_state
    back = order(a_only.lifecycles, {"a": AlertTimes(S), "b": AlertTimes(S)}, NOW + 2)
    assert back.changes_state and back.states == {"a": FIRING, "b": FIRING}
    same = order(back.lifecycles, {"a": AlertTimes(S), "b": AlertTimes(S)}, NOW + 3)
    assert not same.changes_state


def test_a_copy_flushed_before_an_alert_fired_does_not_end_that_alert() -> None:
    # the group resolved; then a fired again (at S2); a peer that flushed before that sends only b's old resolution
    resolved = order(None, {"a": AlertTimes(S, E), "b": AlertTimes(S, E)}, NOW)
    again = order(resolved.lifecycles, {"a": AlertTimes(S2), "b": AlertTimes(S, E)}, NOW + 1)
    copy = order(again.lifecycles, {"b": AlertTimes(S, E)}, NOW + 2)
    assert copy.states == {"a": FIRING, "b": RESOLVED} and copy.left_out == {"a": AlertTimes(S2)}
    assert not copy.changes_state and not copy.lifecycles.left
    # a notification that tells something newer than a's start and leaves a out: a left (silenced, say)
    later = order(again.lifecycles, {"b": AlertTimes(S2 + 5)}, NOW + 3)
    assert later.left_out == {} and later.lifecycles.left == {"a": NOW + 3} and later.states == {"b": FIRING}
