"""The intake's SQL: what a batch of webhooks reads before it is decided, and what it writes after. The statements
are built once per store, in its dialect, and run as bulk statements (store/bulk.py): no dialect check is left to
the intake."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import bindparam, case, func, literal_column, select, text
from sqlalchemy.engine import Connection

from notifier.domain import Delivery, DeliveryState, GroupLifecycles, GroupState, TimelineEvent
from notifier.store.bulk import BulkRead, BulkWrite
from notifier.store.digests import DigestItem, record_items
from notifier.store.escalations import Arm, follow
from notifier.store.payloads import unpack
from notifier.store.repository import dialect_insert
from notifier.store.tables import deliveries, group_lifecycles, group_state, notifications, threads, timeline
from notifier.store.timeline import event_rows
from notifier.store.watchdogs import Sighting, seen


class StoredNotification(msgspec.Struct, kw_only=True):
    """One accepted webhook as the notifications table keeps it."""

    id: str
    received_at: float
    am_receiver: str
    group_key: str
    status: str
    alert_count: int
    redelivery_key: str
    payload: str  # the body as received, or '' when it is packed
    payload_packed: bytes | None  # see store/payloads.py


@dataclass(slots=True)
class Snapshot:
    """The state a batch's decisions read, updated in memory as each webhook is decided."""

    groups: dict[tuple[str, str], GroupState]  # (receiver, group hash) -> what was last committed for delivery
    pending: dict[tuple[str, str], Delivery]  # (target, group hash) -> the message that waits
    sending: set[tuple[str, str]]  # (target, group hash) with a message on its way: the next one must queue
    threads: dict[tuple[str, str], str]  # (target, group hash) -> provider reference of the group's first message
    payloads: dict[str, bytes]  # notification id -> body, of the waiting messages
    lifecycles: dict[str, GroupLifecycles]  # group hash -> what is known of its alerts' lifecycles


_lifecycles_encoder = msgspec.msgpack.Encoder()
_lifecycles_decoder = msgspec.msgpack.Decoder(GroupLifecycles)


@dataclass(slots=True)
class Writes:
    """What a batch writes once every webhook of it is decided."""

    now: float = 0.0

    notifications: list[StoredNotification] = field(default_factory=list)
    groups: dict[tuple[str, str], tuple[str, GroupState]] = field(default_factory=dict)  # -> (group key, state)
    deliveries: dict[tuple[str, ...], Delivery] = field(default_factory=dict)  # the last write of a row counts
    events: list[TimelineEvent] = field(default_factory=list)  # the timeline's lines of these decisions
    lifecycles: dict[str, GroupLifecycles] = field(default_factory=dict)  # group hash -> its lifecycles now
    digest_items: list[DigestItem] = field(default_factory=list)  # alerts for their receivers' next digests
    escalations: list[Arm] = field(default_factory=list)  # what the batch tells the groups' escalation chains
    watchdog: list[Sighting] = field(default_factory=list)  # Watchdog sources the batch proves alive


class IntakeQueries:
    """Reads and writes of the intake transaction (see pipeline/intake.py)."""

    def __init__(self, dialect: str) -> None:
        self._postgres = dialect == "postgresql"
        hashes: Any = bindparam("hashes", expanding=True)
        receivers: Any = bindparam("receivers", expanding=True)
        targets: Any = bindparam("targets", expanding=True)
        # Every read names the leading column of its table's key as well (receiver, target): by group hash alone
        # they would scan whole tables, which grow with history.
        self._groups = BulkRead(
            select(
                group_state.c.receiver, group_state.c.group_hash, group_state.c.alerts, group_state.c.last_sent_at
            ).where(group_state.c.receiver.in_(receivers), group_state.c.group_hash.in_(hashes)),
            dialect,
            ["receivers", "hashes"],
        )
        self._waiting_columns = [c.name for c in deliveries.columns]
        self._waiting = BulkRead(
            select(deliveries).where(
                deliveries.c.target.in_(targets),
                deliveries.c.group_hash.in_(hashes),
                deliveries.c.state.in_([DeliveryState.PENDING.value, DeliveryState.SENDING.value]),
            ),
            dialect,
            ["targets", "hashes"],
        )
        self._threads = BulkRead(
            select(threads.c.target, threads.c.group_hash, threads.c.provider_ref).where(
                threads.c.target.in_(targets), threads.c.group_hash.in_(hashes)
            ),
            dialect,
            ["targets", "hashes"],
        )
        self._payloads = BulkRead(
            select(notifications.c.id, notifications.c.payload, notifications.c.payload_packed).where(
                notifications.c.id.in_(bindparam("ids", expanding=True))
            ),
            dialect,
            ["ids"],
        )
        self._lifecycles = BulkRead(
            select(group_lifecycles.c.group_hash, group_lifecycles.c.lifecycles).where(
                group_lifecycles.c.group_hash.in_(hashes)
            ),
            dialect,
            ["hashes"],
        )
        self._insert_notifications = BulkWrite(notifications.insert(), dialect)
        self._insert_events = BulkWrite(timeline.insert(), dialect)
        lc = dialect_insert(dialect, group_lifecycles)
        self._upsert_lifecycles = BulkWrite(
            lc.on_conflict_do_update(
                index_elements=[group_lifecycles.c.group_hash],
                set_={"lifecycles": lc.excluded.lifecycles, "updated_at": lc.excluded.updated_at},
            ),
            dialect,
        )
        g = dialect_insert(dialect, group_state)
        self._upsert_groups = BulkWrite(
            g.on_conflict_do_update(
                index_elements=[group_state.c.receiver, group_state.c.group_hash],
                set_={"alerts": g.excluded.alerts, "last_sent_at": g.excluded.last_sent_at},
            ),
            dialect,
        )
        d = dialect_insert(dialect, deliveries)
        least = func.least if self._postgres else func.min
        upsert_deliveries = d.on_conflict_do_update(
            index_elements=[deliveries.c.target, deliveries.c.group_hash],
            # a literal, not a parameter: PostgreSQL cannot match a partial index to a parameter
            index_where=text("state = 'pending'"),
            set_={
                "notification_id": d.excluded.notification_id,
                "change": d.excluded.change,
                "silent": d.excluded.silent,
                "updated_at": d.excluded.updated_at,
                # if the worker took a retry back meanwhile, its back-off stands
                "next_attempt_at": case(
                    # a literal: a bulk statement's parameters are its rows' columns alone
                    (deliveries.c.attempts > literal_column("0"), deliveries.c.next_attempt_at),
                    else_=least(deliveries.c.next_attempt_at, d.excluded.next_attempt_at),
                ),
            },
        )
        self._upsert_deliveries = BulkWrite(upsert_deliveries, dialect)

    def lock_groups(self, conn: Connection, hashes: Collection[str]) -> None:
        """PostgreSQL: replicas that take states of the same group at the same moment decide one after the other
        (a transaction-scoped advisory lock per group, taken in one order). SQLite: one writer, nothing to do."""
        if self._postgres:
            for gh in sorted(hashes):
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:h, 0))"), {"h": gh})

    def load(
        self, conn: Connection, receivers: Collection[str], targets: Collection[str], hashes: Collection[str]
    ) -> Snapshot:
        """Group states, waiting messages (with their notifications' bodies) and threads of these groups."""
        groups: dict[tuple[str, str], GroupState] = {}
        hashes = list(hashes)
        if receivers:
            rows = self._groups.rows(conn, {"receivers": list(receivers), "hashes": hashes})
            groups = {
                (r, gh): GroupState(msgspec.json.decode(alerts), last_sent_at) for r, gh, alerts, last_sent_at in rows
            }
        pending: dict[tuple[str, str], Delivery] = {}
        sending: set[tuple[str, str]] = set()
        refs: dict[tuple[str, str], str] = {}
        if targets:
            params = {"targets": list(targets), "hashes": hashes}
            for row in self._waiting.rows(conn, params):
                waiting = Delivery.from_row(dict(zip(self._waiting_columns, row, strict=True)))
                if waiting.state is DeliveryState.PENDING:
                    pending[(waiting.target, waiting.group_hash)] = waiting
                else:
                    sending.add((waiting.target, waiting.group_hash))
            refs = {(t, g): ref for t, g, ref in self._threads.rows(conn, params)}
        payloads: dict[str, bytes] = {}
        wanted = list({p.notification_id for p in pending.values()})
        if wanted:
            for i, body, packed in self._payloads.rows(conn, {"ids": wanted}):
                raw = unpack(body, packed)
                if raw is not None:
                    payloads[i] = raw
        lifecycles = {
            gh: _lifecycles_decoder.decode(blob) for gh, blob in self._lifecycles.rows(conn, {"hashes": hashes})
        }
        return Snapshot(groups, pending, sending, refs, payloads, lifecycles)

    def write(self, conn: Connection, writes: Writes) -> None:
        self._insert_notifications.run(conn, [msgspec.structs.asdict(n) for n in writes.notifications])
        if writes.groups:
            rows = [
                {
                    "receiver": receiver,
                    "group_hash": gh,
                    "group_key": group_key,
                    "alerts": msgspec.json.encode(state.alerts).decode(),
                    "last_sent_at": state.last_sent_at,
                }
                for (receiver, gh), (group_key, state) in writes.groups.items()
            ]
            self._upsert_groups.run(conn, rows)
        if writes.lifecycles:
            rows = [
                {"group_hash": gh, "lifecycles": _lifecycles_encoder.encode(lc), "updated_at": writes.now}
                for gh, lc in writes.lifecycles.items()
            ]
            self._upsert_lifecycles.run(conn, rows)
        self._upsert_deliveries.run(conn, [d.row() for d in writes.deliveries.values()])
        self._insert_events.run(conn, event_rows(writes.events))
        record_items(conn, writes.digest_items)
        follow(conn, writes.escalations, writes.now)
        seen(conn, writes.watchdog)
