"""The arithmetic of a provider's rate limit (`domain.RateRule`), the same for the in-process limiter and the one
kept in the store: a refilling bucket kept as the time it is full again, and when a held message's turn comes."""

from __future__ import annotations

from collections.abc import Sequence

from notifier.domain import RateRule


def refill_wait(rule: RateRule, full_at: float | None, now: float) -> float:
    """How long until a refilling bucket that is full again at `full_at` has a message to spare (0: now)."""
    return turn_at(rule, (), full_at, now, 0) - now


def turn_at(rule: RateRule, sent: Sequence[float], full_at: float | None, now: float, ahead: int) -> float:
    """When a message may go that lets `ahead` messages waiting before it go first, one slot each, if nobody else
    takes a slot meanwhile: `sent` are the times booked in the rule's window (oldest first), `full_at` when a
    refilling bucket is full again."""
    if rule.refills:
        first = max(full_at if full_at is not None else now, now) - (rule.per - rule.per / rule.count)
        return max(now, first + ahead * rule.per / rule.count)
    free = rule.count - len(sent)
    if ahead < free:
        return now
    k = ahead - free  # the k-th booked time to age out opens this message's slot
    if k < len(sent):
        return max(now, sent[k] + rule.per)
    rounds, k = divmod(k, rule.count)  # further out than the window: the slots open again a window later
    return max(now, (sent[k] if k < len(sent) else sent[-1]) + rule.per * (rounds + 1))


def refilled(rule: RateRule, full_at: float, now: float, count: int) -> float:
    """When a refilling bucket is full again after `count` more messages are taken from it now."""
    return max(full_at, now) + count * rule.per / rule.count
