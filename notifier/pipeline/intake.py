"""The intake stages, in two halves.

`prepare` runs in the request (pure): decode the group, compute its redelivery key, route it to receivers.
`commit_batch` runs in the store's group commit (`Store.run_batched`) for every webhook that arrived meanwhile,
set-based: it reads the state the batch needs in a few queries, decides each webhook in arrival order against that
state in memory -- idempotency, per-receiver dedup against what was last committed for delivery, quiet hours
(defer / silent / drop), coalescing into a message of the same group that still waits -- and writes the outcome with
a few bulk statements. Writes per batch, not per webhook, are what let durable intake keep pace with validation alone.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import bindparam, case, delete, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from notifier.api.schema import WebhookPayload, summarize
from notifier.channels.registry import PLUGINS
from notifier.clock import Clock
from notifier.digests import record_items
from notifier.domain import (
    AlertStatus,
    Change,
    ChangeRecord,
    DeliveryState,
    MessageKind,
    Severity,
    SuppressReason,
)
from notifier.errors import StoreUnavailable
from notifier.metrics import NotifierMetrics
from notifier.routing import RouteMatch, Router
from notifier.schedules import Schedule
from notifier.settings import Settings
from notifier.store import new_id
from notifier.store.payloads import pack, unpack
from notifier.store.repository import dialect_insert
from notifier.store.statements import Statement
from notifier.store.tables import deliveries, group_state, intake_keys, notifications, threads

log = logging.getLogger("notifier.intake")
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0


def group_hash(am_receiver: str, group_key: str) -> str:
    return hashlib.sha256(f"{am_receiver}\x00{group_key}".encode()).hexdigest()


@dataclass(slots=True)
class IntakeResult:
    """What one webhook led to; the 202 body is made from it."""

    notification_id: str
    duplicate: bool
    alerts: int
    queued: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)
    receivers: list[str] = field(default_factory=list)
    leased: list[dict[str, Any]] = field(default_factory=list)  # rows handed straight to this process's worker
    key: str = ""  # the redelivery key this webhook holds once committed, until key_expires_at
    key_expires_at: float = 0.0


@dataclass(slots=True)
class IntakeJob:
    """One validated webhook, ready to be committed. It keeps the raw body and what the decisions need, not the
    decoded payload: that can go as soon as the job is made (a 100-alert group is some 500 objects)."""

    group_key: str
    am_receiver: str
    status: str
    alert_count: int
    raw: bytes
    states: dict[str, str]  # fingerprint -> status
    counts: dict[tuple[Severity, str], int]  # alerts per (severity, status), for the metrics
    severity: Severity
    key: str
    group_hash: str
    matches: list[RouteMatch]
    # The body as the notifications row keeps it (see store.payloads.pack). Packed here, right after the decode,
    # while the body is still in the CPU's caches: by the commit, the requests served meanwhile have pushed it out.
    # A redelivery is packed for nothing.
    stored: tuple[str, bytes | None]
    alerts_raw: list[dict[str, Any]] | None = None  # the payload's alerts as sent, decoded when a digest needs them


class RecentKeys:
    """The redelivery keys of the last `dedup.redelivery_window`, in memory: what recognises a redelivery on
    SQLite, where one process serves the store.

    Every stored notification carries its key and its arrival time, so this index is rebuilt from the
    notifications table when the process starts (see `IntakeStage._load`): a redelivery after a restart is still
    recognised. It takes a key only once the transaction that stored the notification has committed
    (`IntakeStage.committed`): a webhook answered 503 leaves no key behind, and Alertmanager's retry is stored. On
    PostgreSQL, where replicas share the store, the intake_keys table plays this part. Keeping the keys out of
    SQLite spares every webhook an insert at a random place of a key index, which on a busy store is a page of
    its own to write to the log and again into the database file."""

    __slots__ = ("_expires", "_holders", "_next_sweep", "_sweep_every")

    def __init__(self, sweep_every: float) -> None:
        """Expired keys are swept out every `sweep_every` seconds (a pass over all of them), so that they take
        memory for at most the window and one sweep interval."""
        # Two maps of plain strings and floats: the cyclic garbage collector leaves such maps alone. A map of
        # tuples would be walked whole by every young collection after each insert (an insert of a tracked value
        # makes the map young again): with a busy window's 100,000 keys, most of the collector's time.
        self._holders: dict[str, str] = {}  # key -> notification id
        self._expires: dict[str, float] = {}  # key -> expires_at
        self._sweep_every = sweep_every
        self._next_sweep = -math.inf

    def __len__(self) -> int:
        return len(self._holders)

    def add(self, key: str, notification_id: str, expires_at: float) -> None:
        self._holders[key] = notification_id
        self._expires[key] = expires_at

    def live(self, keys: Iterable[str], now: float) -> dict[str, str]:
        """key -> notification id, for each of `keys` that a notification still holds at `now`."""
        if now >= self._next_sweep:
            self._sweep(now)
        expires = self._expires
        out: dict[str, str] = {}
        for key in keys:
            expires_at = expires.get(key)
            if expires_at is not None and expires_at > now:
                out[key] = self._holders[key]
        return out

    def _sweep(self, now: float) -> None:
        for key in [k for k, expires_at in self._expires.items() if expires_at <= now]:
            del self._expires[key], self._holders[key]
        self._next_sweep = now + self._sweep_every


class IntakeConflict(StoreUnavailable):
    """Another replica claimed a redelivery key between our read and our write; the batch is retried."""


_FIRING = AlertStatus.FIRING.value
_RESOLVED = AlertStatus.RESOLVED.value


def diff_states(base: dict[str, str], current: dict[str, str]) -> Change:
    """What changed from `base` (fingerprint -> status last committed) to `current`: alerts that fire anew (or fired
    and resolved without ever being told), alerts resolved since, and alerts still firing. One pass: a 100-alert
    group is diffed on every webhook, so the common cases -- a group seen for the first time, a group unchanged
    since -- are counted without a loop in Python."""
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


@dataclass(slots=True)
class _State:
    """What the batch read, updated in memory as each webhook is decided."""

    groups: dict[tuple[str, str], dict[str, Any]]  # (receiver, group_hash) -> {"alerts": {...}, "last_sent_at": t}
    pending: dict[tuple[str, str], dict[str, Any]]  # (target, group_hash) -> the waiting delivery row
    sending: set[tuple[str, str]]  # (target, group_hash) with a message on its way: the next one must queue
    threads: dict[tuple[str, str], str]  # (target, group_hash) -> provider reference of the group's first message
    payloads: dict[str, bytes]  # notification id -> raw payload, for alerts carried into a merged message
    group_writes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    delivery_writes: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)
    notification_writes: list[dict[str, Any]] = field(default_factory=list)
    digest_writes: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)


class IntakeStage:
    """Turns validated webhooks into stored rows."""

    def __init__(
        self,
        settings: Settings,
        router: Router,
        clock: Clock,
        metrics: NotifierMetrics,
        lease_to: Callable[[], tuple[str, int]] | None = None,
    ) -> None:
        """`lease_to` names the local worker and how many messages it can take now: a message that is due at once
        is then leased to it in the intake transaction and handed over in memory, saving a claim round trip."""
        self._lease_to = lease_to
        self._owner, self._capacity = "", 0
        self._settings = settings
        self._router = router
        self._clock = clock
        self._metrics = metrics
        self._schedules = {name: Schedule.from_settings(s) for name, s in settings.quiet_hours.items()}
        self._targets = {r.name: r.targets() for r in settings.receivers}
        self._statements: dict[str, _Statements] = {}
        self._recent: RecentKeys | None = None  # SQLite: loaded by the first transaction, see RecentKeys

    def prepare(self, payload: WebhookPayload, raw: bytes) -> IntakeJob:
        # no per-alert objects here: what the decisions need is each alert's state and the group's severity
        summary = summarize(payload)
        return IntakeJob(
            payload.groupKey,
            payload.receiver,
            payload.status,
            len(payload.alerts),
            raw,
            summary.states,
            summary.counts,
            summary.severity,
            summary.key,
            group_hash(payload.receiver, payload.groupKey),
            self._router.match({**payload.commonLabels, **payload.groupLabels}),
            pack(raw),
        )

    def commit_batch(self, conn: Connection, jobs: list[IntakeJob]) -> list[IntakeResult | Exception]:
        now = self._clock.now()
        if conn.dialect.name == "postgresql":
            # replicas that take states of the same group at the same moment decide one after the other
            for gh in sorted({j.group_hash for j in jobs}):
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:h, 0))"), {"h": gh})
        state, holders = self._load(conn, jobs, now)
        self._owner, self._capacity = self._lease_to() if self._lease_to else ("", 0)
        results: list[IntakeResult | Exception] = []
        for job in jobs:
            holder = holders.get(job.key)
            if holder is not None:
                results.append(IntakeResult(holder, True, job.alert_count))
                continue
            mark = len(state.digest_writes)
            try:
                result = self._decide(job, state, now)
            except Exception as exc:
                del state.digest_writes[mark:]
                log.exception("intake of %s failed", job.group_key)
                results.append(exc)
                continue
            holders[job.key] = result.notification_id
            results.append(result)
        self._write(conn, state, now)
        return results

    def committed(self, results: list[IntakeResult | Exception]) -> None:
        """The store committed these webhooks (`Batch.on_commit`): their redelivery keys now count on SQLite."""
        recent = self._recent
        if recent is None:
            return
        for r in results:
            if isinstance(r, IntakeResult) and not r.duplicate and r.key:
                recent.add(r.key, r.notification_id, r.key_expires_at)

    def _live_keys(self, conn: Connection, keys: list[str], now: float) -> dict[str, str]:
        """key -> notification id for the keys still held: from the intake_keys table, or on SQLite from memory."""
        q = self._stmts(conn)
        if conn.dialect.name != "sqlite":
            return {k: nid for k, nid in q.live_keys.rows(conn, {"keys": keys, "now": now})}
        if self._recent is None:
            window = self._settings.dedup.redelivery_window
            recent = RecentKeys(sweep_every=window / 10)
            for key, nid, received_at in q.recent_keys.rows(conn, {"since": now - window}):
                recent.add(key, nid, received_at + window)
            self._recent = recent
        return self._recent.live(keys, now)

    def _stmts(self, conn: Connection) -> _Statements:
        name = conn.dialect.name
        if name not in self._statements:
            self._statements[name] = _Statements.build(conn)
        return self._statements[name]

    def _load(self, conn: Connection, jobs: list[IntakeJob], now: float) -> tuple[_State, dict[str, str]]:
        """Everything the batch's decisions read: live redelivery keys, group states, waiting messages, threads."""
        q = self._stmts(conn)
        keys = list({j.key for j in jobs})
        hashes = list({j.group_hash for j in jobs})
        # Every read names the leading column of its table's key as well (receiver, target): by group hash alone
        # they would scan whole tables, which grow with history.
        receivers = list({m.receiver for j in jobs for m in j.matches})
        targets = list({t for r in receivers for t, _, _ in self._targets[r]})
        holders = self._live_keys(conn, keys, now)
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        if receivers:
            groups = {
                (r, gh): {"alerts": msgspec.json.decode(alerts), "last_sent_at": last_sent_at}
                for r, gh, alerts, last_sent_at in q.groups.rows(conn, {"receivers": receivers, "hashes": hashes})
            }
        pending: dict[tuple[str, str], dict[str, Any]] = {}
        sending: set[tuple[str, str]] = set()
        refs: dict[tuple[str, str], str] = {}
        if targets:
            for r in q.waiting.dicts(conn, {"targets": targets, "hashes": hashes}):
                if r["state"] == DeliveryState.PENDING.value:
                    pending[(r["target"], r["group_hash"])] = r
                else:
                    sending.add((r["target"], r["group_hash"]))
            refs = {(t, g): ref for t, g, ref in q.threads.rows(conn, {"targets": targets, "hashes": hashes})}
        wanted = list({p["notification_id"] for p in pending.values()})
        payloads: dict[str, bytes] = {}
        if wanted:
            for i, text, packed in q.payloads.rows(conn, {"ids": wanted}):
                body = unpack(text, packed)
                if body is not None:
                    payloads[i] = body
        return _State(groups, pending, sending, refs, payloads), holders

    def _decide(self, job: IntakeJob, st: _State, now: float) -> IntakeResult:
        nid = new_id()
        window = self._settings.dedup.redelivery_window
        result = IntakeResult(nid, False, job.alert_count, key=job.key, key_expires_at=now + window)
        group_updates: dict[tuple[str, str], dict[str, Any]] = {}
        delivery_updates: dict[tuple[str, str], dict[str, Any]] = {}
        for match in job.matches:
            result.receivers.append(match.receiver)
            self._route_to(job, match, st, now, nid, result, group_updates, delivery_updates)
        # the webhook is decided: make its effects visible to the next webhook of the batch, and queue the writes
        for k, v in group_updates.items():
            st.groups[k] = v
            st.group_writes[k] = {
                "receiver": k[0],
                "group_hash": k[1],
                "group_key": job.group_key,
                "alerts": msgspec.json.encode(v["alerts"]).decode(),
                "last_sent_at": v["last_sent_at"],
            }
        for k, row in delivery_updates.items():
            if row["state"] == DeliveryState.SENDING.value:
                st.sending.add(k)
                st.delivery_writes[(k[0], k[1], row["id"])] = row
            else:
                st.pending[k] = row
                st.delivery_writes[k] = row
        st.payloads[nid] = job.raw
        text, packed = job.stored
        st.notification_writes.append(
            {
                "id": nid,
                "received_at": now,
                "am_receiver": job.am_receiver,
                "group_key": job.group_key,
                "status": job.status,
                "alert_count": job.alert_count,
                "redelivery_key": job.key,
                "payload": text,
                "payload_packed": packed,
            }
        )
        return result

    def _route_to(
        self,
        job: IntakeJob,
        match: RouteMatch,
        st: _State,
        now: float,
        nid: str,
        result: IntakeResult,
        group_updates: dict[tuple[str, str], dict[str, Any]],
        delivery_updates: dict[tuple[str, str], dict[str, Any]],
    ) -> None:
        receiver = self._settings.receiver(match.receiver)
        gh = job.group_hash
        current = job.states
        severity = job.severity.value
        prior = st.groups.get((receiver.name, gh))
        base: dict[str, str] = prior["alerts"] if prior else {}
        change = diff_states(base, current)
        repeat = match.repeat_interval if match.repeat_interval is not None else DEFAULT_REPEAT_INTERVAL
        repeat_due = (
            prior is not None and repeat > 0 and change.still_firing > 0 and now - prior["last_sent_at"] >= repeat
        )
        wants_resolved = change.resolved > 0 and receiver.send_resolved
        if not (change.new or wants_resolved or repeat_due):
            self._suppress(SuppressReason.UNCHANGED, result)
            if change.resolved:  # not sent (send_resolved: false), but the next firing must count as new
                group_updates[(receiver.name, gh)] = {
                    "alerts": current,
                    "last_sent_at": prior["last_sent_at"] if prior else now,
                }
            return

        silent = False
        not_before = now
        skip_resolved = False
        digest = match.digest
        qh = match.quiet_hours
        if qh is not None and severity not in qh.bypass_severities:
            window = self._schedules[qh.schedule].active_window(now)
            if window is not None:
                if qh.mode == "drop":
                    self._suppress(SuppressReason.QUIET_HOURS_DROP, result)
                    return
                if qh.mode == "silent":
                    silent = True
                elif qh.mode == "digest":
                    digest = True
                else:  # defer: held until the window ends, then one catch-up with the newest state
                    not_before = window[1]
                    skip_resolved = qh.skip_resolved
                    self._metrics.deferred()
        group_updates[(receiver.name, gh)] = {"alerts": current, "last_sent_at": now}
        if digest:  # into the receiver's next digest instead of a message now
            if job.alerts_raw is None:
                job.alerts_raw = msgspec.json.decode(job.raw)["alerts"]
            st.digest_writes.append((receiver.name, job.alerts_raw))
            return

        for target, channel, settings in self._targets[receiver.name]:
            target_silent = silent or PLUGINS[channel].silent(settings, job.severity)
            info = ChangeRecord(
                base=base,
                repeat=bool(repeat_due and not change.new),
                skip_if_resolved=skip_resolved,
                new=change.new,
                resolved=change.resolved,
                still_firing=change.still_firing,
            )
            waiting = st.pending.get((target, gh))
            row_id = new_id()
            attempts = 0
            created = now
            if waiting is not None:
                # merge: keep the base of the waiting message, so the catch-up tells everything since the last
                # delivery, and carry alerts that left the group meanwhile (fired and resolved while held)
                old = ChangeRecord.decode(waiting["change"])
                gone = self._carry_gone(st, waiting, old, current)
                merged_base = old.base if old.base is not None else base
                with_gone = {**{g["fingerprint"]: AlertStatus.RESOLVED.value for g in gone}, **current}
                info = ChangeRecord(
                    base=merged_base, gone=gone, skip_if_resolved=old.skip_if_resolved and skip_resolved
                ).with_counts(diff_states(merged_base, with_gone))
                target_silent = target_silent and bool(waiting["silent"])
                row_id, attempts, created = waiting["id"], waiting["attempts"], waiting["created_at"]
                if attempts == 0:
                    not_before = min(not_before, waiting["next_attempt_at"])
                else:
                    not_before = waiting["next_attempt_at"]  # a retry keeps its back-off
            row = {
                "id": row_id,
                "notification_id": nid,
                "receiver": receiver.name,
                "target": target,
                "channel": channel,
                "group_key": job.group_key,
                "group_hash": gh,
                "state": DeliveryState.PENDING.value,
                "kind": MessageKind.ALERT.value,
                "silent": target_silent,
                "change": info.encode(),
                "attempts": attempts,
                "parts_sent": 0,
                "created_at": created,
                "updated_at": now,
                "next_attempt_at": not_before,
                "lease_owner": None,
                "lease_until": None,
            }
            if (
                waiting is None
                and not_before <= now
                and self._capacity > 0
                and (target, gh) not in st.sending
                and (target, gh) not in delivery_updates
            ):
                self._capacity -= 1
                row.update(
                    state=DeliveryState.SENDING.value,
                    lease_owner=self._owner,
                    lease_until=now + self._settings.delivery.lease,
                )
                result.leased.append({**row, "payload": job.raw, "thread_ref": st.threads.get((target, gh))})
            delivery_updates[(target, gh)] = row
            result.queued += 1

    def _suppress(self, reason: SuppressReason, result: IntakeResult) -> None:
        self._metrics.suppressed(reason)
        result.suppressed[reason] = result.suppressed.get(reason, 0) + 1

    @staticmethod
    def _carry_gone(st: _State, waiting: dict[str, Any], old: ChangeRecord, present: dict[str, str]) -> list[Any]:
        """Alerts of the waiting message's state that the new state no longer lists (Alertmanager drops resolved
        alerts from later notifications): kept so that the catch-up still shows them."""
        gone: list[dict[str, Any]] = list(old.gone)
        raw = st.payloads.get(waiting["notification_id"])
        if raw is not None:
            known = {g["fingerprint"] for g in gone}
            for a in msgspec.json.decode(raw)["alerts"]:
                if a["fingerprint"] not in present and a["fingerprint"] not in known:
                    gone.append(a)
        return [g for g in gone if g["fingerprint"] not in present]

    def _write(self, conn: Connection, st: _State, now: float) -> None:
        q = self._stmts(conn)
        if st.notification_writes and conn.dialect.name != "sqlite":  # SQLite keeps them in memory: see RecentKeys
            # Each new notification holds its key for the window. Expired keys give way; a live one that another
            # replica wrote since our read makes the plain INSERT fail on the primary key, and the store retries
            # this batch one webhook at a time.
            expires_at = now + self._settings.dedup.redelivery_window
            key_writes = [
                {"key": n["redelivery_key"], "notification_id": n["id"], "expires_at": expires_at}
                for n in st.notification_writes
            ]
            q.expired_keys.execute(conn, {"keys": [k["key"] for k in key_writes], "now": now})
            try:
                q.insert_keys.execute_many(conn, key_writes)
            except IntegrityError as exc:
                raise IntakeConflict("a redelivery key was claimed concurrently; retrying") from exc
        q.insert_notifications.execute_many(conn, st.notification_writes)
        if st.group_writes:
            q.upsert_groups.execute_many(conn, list(st.group_writes.values()))
        for receiver, alerts in st.digest_writes:
            record_items(conn, receiver, alerts, now)
        if st.delivery_writes:
            q.upsert_deliveries.execute_many(conn, list(st.delivery_writes.values()))


@dataclass(frozen=True, slots=True)
class _Statements:
    """The intake's statements, built once per dialect: building an upsert costs more than running it."""

    live_keys: Statement
    recent_keys: Statement
    groups: Statement
    waiting: Statement
    threads: Statement
    payloads: Statement
    expired_keys: Statement
    insert_keys: Statement
    insert_notifications: Statement
    upsert_groups: Statement
    upsert_deliveries: Statement

    @classmethod
    def build(cls, conn: Connection) -> _Statements:
        hashes: Any = bindparam("hashes", expanding=True)
        keys: Any = bindparam("keys", expanding=True)
        receivers: Any = bindparam("receivers", expanding=True)
        targets: Any = bindparam("targets", expanding=True)
        now: Any = bindparam("now")
        g = dialect_insert(conn, group_state)
        d = dialect_insert(conn, deliveries)
        least = func.min if conn.dialect.name == "sqlite" else func.least
        statements = dict(
            live_keys=select(intake_keys.c.key, intake_keys.c.notification_id).where(
                intake_keys.c.key.in_(keys), intake_keys.c.expires_at > now
            ),
            recent_keys=select(notifications.c.redelivery_key, notifications.c.id, notifications.c.received_at)
            .where(notifications.c.received_at > bindparam("since"))
            .order_by(notifications.c.received_at),
            groups=select(
                group_state.c.receiver, group_state.c.group_hash, group_state.c.alerts, group_state.c.last_sent_at
            ).where(group_state.c.receiver.in_(receivers), group_state.c.group_hash.in_(hashes)),
            waiting=select(deliveries).where(
                deliveries.c.target.in_(targets),
                deliveries.c.group_hash.in_(hashes),
                deliveries.c.state.in_([DeliveryState.PENDING.value, DeliveryState.SENDING.value]),
            ),
            threads=select(threads.c.target, threads.c.group_hash, threads.c.provider_ref).where(
                threads.c.target.in_(targets), threads.c.group_hash.in_(hashes)
            ),
            payloads=select(notifications.c.id, notifications.c.payload, notifications.c.payload_packed).where(
                notifications.c.id.in_(bindparam("ids", expanding=True))
            ),
            expired_keys=delete(intake_keys).where(intake_keys.c.key.in_(keys), intake_keys.c.expires_at <= now),
            insert_keys=intake_keys.insert(),
            insert_notifications=notifications.insert(),
            upsert_groups=g.on_conflict_do_update(
                index_elements=[group_state.c.receiver, group_state.c.group_hash],
                set_={"alerts": g.excluded.alerts, "last_sent_at": g.excluded.last_sent_at},
            ),
            upsert_deliveries=d.on_conflict_do_update(
                index_elements=[deliveries.c.target, deliveries.c.group_hash],
                # a literal, not a parameter: PostgreSQL's generic plans cannot match a partial index to one
                index_where=text("state = 'pending'"),
                set_={
                    "notification_id": d.excluded.notification_id,
                    "change": d.excluded.change,
                    "silent": d.excluded.silent,
                    "updated_at": d.excluded.updated_at,
                    # if the worker took a retry back meanwhile, its back-off stands
                    "next_attempt_at": case(
                        (deliveries.c.attempts > 0, deliveries.c.next_attempt_at),
                        else_=least(deliveries.c.next_attempt_at, d.excluded.next_attempt_at),
                    ),
                },
            ),
        )
        return cls(**{name: Statement(stmt) for name, stmt in statements.items()})
