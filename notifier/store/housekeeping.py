"""Housekeeping: what the notifier no longer needs is deleted, so that its database stops growing.

Every webhook keeps its payload, every message its delivery row; without pruning a busy setup fills its disk in
months, and a full disk turns into 503s at the worst moment. Once an hour (and once shortly after start) rows older
than `storage.retention` that nothing still depends on are deleted, in chunks, each chunk its own short transaction
so that intake never waits long behind it:

- messages that were sent or went dead (an operator has had the whole retention period to retry a dead one);
- notifications that no remaining message refers to (a waiting message keeps its payload however old);
- redelivery keys once they expire (they only matter within `dedup.redelivery_window`);
- thread references of groups with no message left that no longer fire, group states whose alerts all resolved,
  digest items that resolved, digest runs except each receiver's newest (the next digest's period starts there),
  what orders the states of a group that had no notification for the whole retention period, and rate-limit
  slots older than an hour (no limit looks back further than a minute).

A still-firing group keeps its state and a still-firing alert its digest item, however old: forgetting them would
announce an old alert as new. `storage.retention: 0` keeps everything. On SQLite, deleted pages are reused by new
rows; the file only shrinks with `VACUUM`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, select, tuple_
from sqlalchemy.engine import Connection

from notifier.clock import Clock
from notifier.domain import DeliveryState
from notifier.metrics import NotifierMetrics
from notifier.store.engine import Store
from notifier.store.ids import id_floor
from notifier.store.tables import (
    action_log,
    alert_groups,
    chat_actions,
    deliveries,
    digest_items,
    digest_runs,
    group_acks,
    group_lifecycles,
    group_silences,
    group_state,
    intake_keys,
    notifications,
    own_silences,
    rate_buckets,
    rate_slots,
    seen_requests,
    threads,
    timeline,
    ui_sessions,
)
from notifier.tasks import cancel_and_wait

log = logging.getLogger("notifier.housekeeping")
CHUNK = 500  # rows per transaction: short enough that a webhook arriving meanwhile waits milliseconds, not seconds
INTERVAL = 3600.0
FIRST_RUN_AFTER = 60.0
RATE_SLOT_AGE = 3600.0


@dataclass(frozen=True, slots=True)
class _Rule:
    """Rows of `table` that `where(now, cutoff)` selects, deleted by their `key` columns, CHUNK at a time."""

    table: Any
    key: tuple[Any, ...]
    where: Callable[[float, float], tuple[Any, ...]]


def _rules() -> list[_Rule]:
    done = [DeliveryState.SENT.value, DeliveryState.DEAD.value]
    later_run = digest_runs.alias("later")
    return [
        # messages first: they hold their notifications
        _Rule(
            deliveries,
            (deliveries.c.id,),
            lambda now, cutoff: (
                deliveries.c.state.in_(done),
                deliveries.c.next_attempt_at < cutoff,
                deliveries.c.updated_at < cutoff,
            ),
        ),
        _Rule(intake_keys, (intake_keys.c.key,), lambda now, cutoff: (intake_keys.c.expires_at < now,)),
        _Rule(
            notifications,
            (notifications.c.id,),
            lambda now, cutoff: (
                notifications.c.received_at < cutoff,
                ~exists().where(deliveries.c.notification_id == notifications.c.id),
            ),
        ),
        _Rule(
            group_state,
            (group_state.c.receiver, group_state.c.group_hash),
            # the stored state is msgspec's JSON of {fingerprint: status}: no "firing" in it, nothing fires
            lambda now, cutoff: (group_state.c.last_sent_at < cutoff, group_state.c.alerts.not_like('%"firing"%')),
        ),
        _Rule(
            digest_items,
            (digest_items.c.id,),
            lambda now, cutoff: (digest_items.c.status != "firing", digest_items.c.last_seen < cutoff),
        ),
        _Rule(
            digest_runs,
            (digest_runs.c.receiver, digest_runs.c.tick_at),
            lambda now, cutoff: (
                digest_runs.c.ran_at < cutoff,
                exists().where(
                    later_run.c.receiver == digest_runs.c.receiver, later_run.c.tick_at > digest_runs.c.tick_at
                ),
            ),
        ),
        # what orders a group's states matters for minutes (a peer's late copy); a group quiet for the whole
        # retention period has nothing left to order
        _Rule(
            group_lifecycles,
            (group_lifecycles.c.group_hash,),
            lambda now, cutoff: (group_lifecycles.c.updated_at < cutoff,),
        ),
        _Rule(
            rate_slots,
            (rate_slots.c.key, rate_slots.c.at),
            lambda now, cutoff: (rate_slots.c.at < now - RATE_SLOT_AGE,),
        ),
        # a bucket full again is the same as no row
        _Rule(rate_buckets, (rate_buckets.c.key,), lambda now, cutoff: (rate_buckets.c.full_at < now,)),
        # chat actions: a resolved group's record, the actions behind old buttons, silences that ended, the log
        _Rule(
            alert_groups,
            (alert_groups.c.group_hash,),
            lambda now, cutoff: (alert_groups.c.firing == 0, alert_groups.c.updated_at < cutoff),
        ),
        _Rule(chat_actions, (chat_actions.c.id,), lambda now, cutoff: (chat_actions.c.created_at < cutoff,)),
        _Rule(group_acks, (group_acks.c.group_hash,), lambda now, cutoff: (group_acks.c.at < cutoff,)),
        _Rule(group_silences, (group_silences.c.group_hash,), lambda now, cutoff: (group_silences.c.until < now,)),
        _Rule(action_log, (action_log.c.id,), lambda now, cutoff: (action_log.c.at < cutoff,)),
        _Rule(own_silences, (own_silences.c.silence_id,), lambda now, cutoff: (own_silences.c.ends_at < cutoff,)),
        # requests seen and logins once they no longer count
        _Rule(seen_requests, (seen_requests.c.key,), lambda now, cutoff: (seen_requests.c.expires_at < now,)),
        _Rule(ui_sessions, (ui_sessions.c.id_hash,), lambda now, cutoff: (ui_sessions.c.expires_at < now,)),
        _Rule(timeline, (timeline.c.id,), lambda now, cutoff: (timeline.c.id < id_floor(cutoff),)),
    ]


def _delete_keys(table: Any, key: tuple[Any, ...], rows: Sequence[Sequence[Any]]) -> Any:
    if len(key) == 1:
        return delete(table).where(key[0].in_([r[0] for r in rows]))
    return delete(table).where(tuple_(*key).in_([tuple(r) for r in rows]))


def _prune_chunk(conn: Connection, rule: _Rule, now: float, cutoff: float) -> int:
    rows = conn.execute(select(*rule.key).where(*rule.where(now, cutoff)).limit(CHUNK)).all()
    if rows:
        conn.execute(_delete_keys(rule.table, rule.key, rows))
    return len(rows)


def _prune_threads(conn: Connection, cutoff: float, after: tuple[str, str]) -> tuple[int, int, tuple[str, str]]:
    """Thread references of groups that have no message left and no longer fire, by pages of (target, group hash):
    (examined, deleted, last key). A group that still fires keeps its thread however old, so that its resolved
    message still replies to its first one."""
    page = [
        (str(t), str(g))
        for t, g in conn.execute(
            select(threads.c.target, threads.c.group_hash)
            .where(
                tuple_(threads.c.target, threads.c.group_hash) > tuple_(*after),
                threads.c.created_at < cutoff,
                ~exists().where(
                    deliveries.c.target == threads.c.target, deliveries.c.group_hash == threads.c.group_hash
                ),
            )
            .order_by(threads.c.target, threads.c.group_hash)
            .limit(CHUNK)
        ).all()
    ]
    if not page:
        return 0, 0, after
    # a target is named "receiver/channel/index"; the receiver's state of the group tells whether it still fires
    wanted = {(t.rsplit("/", 2)[0], g) for t, g in page}
    firing = {
        (str(r), str(g))
        for r, g in conn.execute(
            select(group_state.c.receiver, group_state.c.group_hash).where(
                group_state.c.receiver.in_({r for r, _ in wanted}),
                group_state.c.group_hash.in_({g for _, g in wanted}),
                group_state.c.alerts.like('%"firing"%'),
            )
        ).all()
    }
    gone = [(t, g) for t, g in page if (t.rsplit("/", 2)[0], g) not in firing]
    if gone:
        conn.execute(_delete_keys(threads, (threads.c.target, threads.c.group_hash), gone))
    return len(page), len(gone), page[-1]


class Housekeeper:
    """Deletes what the notifier no longer needs, once an hour."""

    def __init__(self, store: Store, retention: float, clock: Clock, metrics: NotifierMetrics) -> None:
        self._store = store
        self._retention = retention
        self._clock = clock
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self._rules = _rules()

    def start(self) -> None:
        if self._retention > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="housekeeping")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        await asyncio.sleep(FIRST_RUN_AFTER)
        while True:
            try:
                await self.prune()
            except Exception as exc:  # the store is down or refused: try again next time, never stop trying
                log.warning("housekeeping failed, retrying in an hour: %s", exc)
            await asyncio.sleep(INTERVAL)

    async def prune(self) -> dict[str, int]:
        """Delete everything that is due now; returns rows deleted per table."""
        if self._retention <= 0:
            return {}
        now = self._clock.now()
        cutoff = now - self._retention
        deleted: dict[str, int] = {}
        for rule in self._rules:
            deleted[rule.table.name] = await self._drain(
                functools.partial(_prune_chunk, rule=rule, now=now, cutoff=cutoff)
            )
        deleted["threads"] = 0
        after = ("", "")
        while True:
            examined, gone, after = await self._store.run_in_transaction(
                functools.partial(_prune_threads, cutoff=cutoff, after=after)
            )
            deleted["threads"] += gone
            if examined < CHUNK:
                break
        for table, n in deleted.items():
            if n:
                self._metrics.pruned.labels(table).inc(n)
        if any(deleted.values()):
            log.info(
                "housekeeping deleted %s (retention %.0fd)",
                ", ".join(f"{n} {t}" for t, n in deleted.items() if n),
                self._retention / 86400,
            )
        return deleted

    async def _drain(self, chunk: Any) -> int:
        total = 0
        while True:
            n: int = await self._store.run_in_transaction(chunk)
            total += n
            if n < CHUNK:
                return total
            await asyncio.sleep(0)  # let intake in between chunks
