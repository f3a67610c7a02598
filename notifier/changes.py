"""What a message tells of its group: the change between two states of it, and one message that takes in an older
one of the same group that never went out. Pure functions over the outbox's records, used where messages are made
(the intake) and where a waiting message is folded into a newer one (the store)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from notifier.alertmanager import correct_alerts
from notifier.domain import AlertStatus, Change, ChangeRecord

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


def fold_changes(
    older: ChangeRecord, older_alerts: list[dict[str, Any]], newer: ChangeRecord, current: Mapping[str, str]
) -> ChangeRecord:
    """One record for a message that tells `current` (fingerprint -> status, the newer message's state) and takes in
    an older message of the same group and target that never went out. It is measured from the older message's
    base, so that it tells everything since the last delivery, and it carries the alerts that left the group
    meanwhile (fired and resolved while held: Alertmanager drops resolved alerts from later notifications).
    `older_alerts` are the alerts of the older message's notification, as received."""
    seen = set(current)
    gone: list[dict[str, Any]] = []
    for a in [*older.gone, *correct_alerts(older_alerts, older.stale), *newer.gone]:
        fp = a.get("fingerprint", "")
        if fp not in seen:
            seen.add(fp)
            gone.append(a)
    base = older.base if older.base is not None else newer.base
    with_gone = {**{g["fingerprint"]: _RESOLVED for g in gone}, **current}
    return ChangeRecord(
        base=base,
        gone=gone,
        skip_if_resolved=older.skip_if_resolved and newer.skip_if_resolved,
        stale=newer.stale,
    ).with_counts(diff_states(base or {}, with_gone))
