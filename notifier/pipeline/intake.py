"""The intake stages, in two halves.

`prepare` runs in the request (pure): decode the group, compute its redelivery key, route it to receivers.
`commit_batch` runs in the group committer's transaction for every webhook that arrived meanwhile, set-based: it
reads the state the batch needs in a few queries, decides each webhook in arrival order against that state in
memory -- idempotency, per-receiver dedup against what was last committed for delivery, quiet hours (defer / silent
/ drop), coalescing into a message of the same group that still waits -- and writes the outcome with a few bulk
statements. Writes per batch, not per webhook, are what let durable intake keep pace with validation alone.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import case, delete, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from notifier.api.schema import WebhookPayload, raw_redelivery_tuples, to_group
from notifier.clock import Clock
from notifier.domain import AlertGroup, AlertStatus, DeliveryState, MessageKind, redelivery_key
from notifier.errors import StoreUnavailable
from notifier.metrics import NotifierMetrics
from notifier.routing import RouteMatch, Router
from notifier.schedules import Schedule
from notifier.settings import Settings
from notifier.store import new_id
from notifier.store.repository import dialect_insert
from notifier.store.tables import deliveries, group_state, intake_keys, notifications

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


@dataclass(slots=True)
class IntakeJob:
    """One validated webhook, ready to be committed."""

    payload: WebhookPayload
    raw: bytes
    group: AlertGroup
    key: str
    group_hash: str
    matches: list[RouteMatch]


class IntakeConflict(StoreUnavailable):
    """Another replica claimed a redelivery key between our read and our write; the batch is retried."""


def diff_states(base: dict[str, str], current: dict[str, str]) -> dict[str, int]:
    """What changed from `base` (fingerprint -> status last committed) to `current`."""
    firing_before = {fp for fp, s in base.items() if s == AlertStatus.FIRING}
    resolved_before = {fp for fp, s in base.items() if s == AlertStatus.RESOLVED}
    firing = {fp for fp, s in current.items() if s == AlertStatus.FIRING}
    resolved = {fp for fp, s in current.items() if s == AlertStatus.RESOLVED}
    return {
        "new": len(firing - firing_before),
        "resolved": len(resolved - resolved_before),
        "still_firing": len(firing & firing_before),
    }


@dataclass(slots=True)
class _State:
    """What the batch read, updated in memory as each webhook is decided."""

    groups: dict[tuple[str, str], dict[str, Any]]  # (receiver, group_hash) -> {"alerts": {...}, "last_sent_at": t}
    pending: dict[tuple[str, str], dict[str, Any]]  # (target, group_hash) -> the waiting delivery row
    payloads: dict[str, bytes]  # notification id -> raw payload, for alerts carried into a merged message
    group_writes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    delivery_writes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    notification_writes: list[dict[str, Any]] = field(default_factory=list)
    key_writes: list[dict[str, Any]] = field(default_factory=list)


class IntakeStage:
    """Turns validated webhooks into stored rows."""

    def __init__(self, settings: Settings, router: Router, clock: Clock, metrics: NotifierMetrics) -> None:
        self._settings = settings
        self._router = router
        self._clock = clock
        self._metrics = metrics
        self._schedules = {name: Schedule.from_settings(s) for name, s in settings.quiet_hours.items()}
        self._targets = {r.name: r.targets() for r in settings.receivers}

    def prepare(self, payload: WebhookPayload, raw: bytes) -> IntakeJob:
        group = to_group(payload)
        key = redelivery_key(payload.groupKey, payload.receiver, raw_redelivery_tuples(payload))
        return IntakeJob(
            payload,
            raw,
            group,
            key,
            group_hash(payload.receiver, payload.groupKey),
            self._router.match(group.labels_for_routing()),
        )

    def commit_batch(self, conn: Connection, jobs: list[IntakeJob]) -> list[IntakeResult | Exception]:
        now = self._clock.now()
        state, holders = self._load(conn, jobs, now)
        results: list[IntakeResult | Exception] = []
        for job in jobs:
            holder = holders.get(job.key)
            if holder is not None:
                results.append(IntakeResult(holder, True, len(job.payload.alerts)))
                continue
            try:
                result = self._decide(job, state, now)
            except Exception as exc:
                log.exception("intake of %s failed", job.payload.groupKey)
                results.append(exc)
                continue
            holders[job.key] = result.notification_id
            results.append(result)
        self._write(conn, state, now)
        return results

    def _load(self, conn: Connection, jobs: list[IntakeJob], now: float) -> tuple[_State, dict[str, str]]:
        """Everything the batch's decisions read: live redelivery keys, group states, waiting messages."""
        keys = list({j.key for j in jobs})
        holders = {
            k: nid
            for k, nid in (
                conn.execute(
                    select(intake_keys.c.key, intake_keys.c.notification_id).where(
                        intake_keys.c.key.in_(keys), intake_keys.c.expires_at > now
                    )
                )
            ).all()
        }
        hashes = list({j.group_hash for j in jobs})
        groups = {
            (r.receiver, r.group_hash): {"alerts": msgspec.json.decode(r.alerts), "last_sent_at": r.last_sent_at}
            for r in (conn.execute(select(group_state).where(group_state.c.group_hash.in_(hashes)))).all()
        }
        pending = {
            (r["target"], r["group_hash"]): dict(r)
            for r in (
                conn.execute(
                    select(deliveries).where(
                        deliveries.c.group_hash.in_(hashes), deliveries.c.state == DeliveryState.PENDING.value
                    )
                )
            ).mappings()
        }
        wanted = list({p["notification_id"] for p in pending.values()})
        payloads: dict[str, bytes] = {}
        if wanted:
            q = select(notifications.c.id, notifications.c.payload).where(notifications.c.id.in_(wanted))
            payloads = {i: p.encode() for i, p in (conn.execute(q)).all()}
        return _State(groups, pending, payloads), holders

    def _decide(self, job: IntakeJob, st: _State, now: float) -> IntakeResult:
        nid = new_id()
        result = IntakeResult(nid, False, len(job.payload.alerts))
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
                "group_key": job.group.group_key,
                "alerts": msgspec.json.encode(v["alerts"]).decode(),
                "last_sent_at": v["last_sent_at"],
            }
        for k, row in delivery_updates.items():
            st.pending[k] = row
            st.delivery_writes[k] = row
        st.payloads[nid] = job.raw
        st.key_writes.append(
            {"key": job.key, "notification_id": nid, "expires_at": now + self._settings.dedup.redelivery_window}
        )
        st.notification_writes.append(
            {
                "id": nid,
                "received_at": now,
                "am_receiver": job.payload.receiver,
                "group_key": job.payload.groupKey,
                "status": job.payload.status,
                "alert_count": len(job.payload.alerts),
                "redelivery_key": job.key,
                "payload": job.raw.decode("utf-8"),
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
        group = job.group
        gh = job.group_hash
        current = {a.fingerprint: a.status.value for a in group.alerts}
        prior = st.groups.get((receiver.name, gh))
        base: dict[str, str] = prior["alerts"] if prior else {}
        change = diff_states(base, current)
        repeat = match.repeat_interval if match.repeat_interval is not None else DEFAULT_REPEAT_INTERVAL
        repeat_due = (
            prior is not None and repeat > 0 and change["still_firing"] > 0 and now - prior["last_sent_at"] >= repeat
        )
        wants_resolved = change["resolved"] > 0 and receiver.send_resolved
        if not (change["new"] or wants_resolved or repeat_due):
            self._suppress("unchanged", result)
            if change["resolved"]:  # not sent (send_resolved: false), but the next firing must count as new
                group_updates[(receiver.name, gh)] = {
                    "alerts": current,
                    "last_sent_at": prior["last_sent_at"] if prior else now,
                }
            return

        silent = False
        not_before = now
        qh = match.quiet_hours
        if qh is not None and group.severity.value not in qh.bypass_severities:
            window = self._schedules[qh.schedule].active_window(now)
            if window is not None:
                if qh.mode == "drop":
                    self._suppress("quiet_hours_drop", result)
                    return
                if qh.mode == "silent":
                    silent = True
                else:  # defer: held until the window ends, then one catch-up with the newest state
                    not_before = window[1]
                    self._metrics.deferred()
        group_updates[(receiver.name, gh)] = {"alerts": current, "last_sent_at": now}

        for target, channel, settings in self._targets[receiver.name]:
            target_silent = silent or (channel == "telegram" and group.severity.value in settings.silent_severities)
            info: dict[str, Any] = {"base": base, "repeat": bool(repeat_due and not change["new"]), **change}
            waiting = st.pending.get((target, gh))
            row_id = new_id()
            attempts = 0
            created = now
            if waiting is not None:
                # merge: keep the base of the waiting message, so the catch-up tells everything since the last
                # delivery, and carry alerts that left the group meanwhile (fired and resolved while held)
                old = msgspec.json.decode(waiting["change"])
                info["base"] = old.get("base", base)
                info.update(diff_states(info["base"], current))
                info["repeat"] = False
                info["gone"] = self._carry_gone(st, waiting, old, group)
                target_silent = target_silent and bool(waiting["silent"])
                row_id, attempts, created = waiting["id"], waiting["attempts"], waiting["created_at"]
                if attempts == 0:
                    not_before = min(not_before, waiting["next_attempt_at"])
                else:
                    not_before = waiting["next_attempt_at"]  # a retry keeps its back-off
            delivery_updates[(target, gh)] = {
                "id": row_id,
                "notification_id": nid,
                "receiver": receiver.name,
                "target": target,
                "channel": channel,
                "group_key": group.group_key,
                "group_hash": gh,
                "state": DeliveryState.PENDING.value,
                "kind": MessageKind.ALERT.value,
                "silent": target_silent,
                "change": msgspec.json.encode(info).decode(),
                "attempts": attempts,
                "parts_sent": 0,
                "created_at": created,
                "updated_at": now,
                "next_attempt_at": not_before,
            }
            result.queued += 1

    def _suppress(self, reason: str, result: IntakeResult) -> None:
        self._metrics.suppressed(reason)
        result.suppressed[reason] = result.suppressed.get(reason, 0) + 1

    @staticmethod
    def _carry_gone(st: _State, waiting: dict[str, Any], old: dict[str, Any], group: AlertGroup) -> list[Any]:
        """Alerts of the waiting message's state that the new state no longer lists (Alertmanager drops resolved
        alerts from later notifications): kept so that the catch-up still shows them."""
        gone: list[dict[str, Any]] = list(old.get("gone", []))
        present = {a.fingerprint for a in group.alerts}
        raw = st.payloads.get(waiting["notification_id"])
        if raw is not None:
            known = {g["fingerprint"] for g in gone}
            for a in msgspec.json.decode(raw)["alerts"]:
                if a["fingerprint"] not in present and a["fingerprint"] not in known:
                    gone.append(a)
        return [g for g in gone if g["fingerprint"] not in present]

    def _write(self, conn: Connection, st: _State, now: float) -> None:
        if st.key_writes:
            # Expired keys give way; a live one that another replica wrote since our read makes the plain INSERT
            # fail on the primary key, and the committer retries this batch one webhook at a time.
            conn.execute(
                delete(intake_keys).where(
                    intake_keys.c.key.in_([k["key"] for k in st.key_writes]), intake_keys.c.expires_at <= now
                )
            )
            try:
                conn.execute(intake_keys.insert(), st.key_writes)
            except IntegrityError as exc:
                raise IntakeConflict("a redelivery key was claimed concurrently; retrying") from exc
            conn.execute(notifications.insert(), st.notification_writes)
        if st.group_writes:
            ins = dialect_insert(conn, group_state)
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=[group_state.c.receiver, group_state.c.group_hash],
                    set_={"alerts": ins.excluded.alerts, "last_sent_at": ins.excluded.last_sent_at},
                ),
                list(st.group_writes.values()),
            )
        if st.delivery_writes:
            ins = dialect_insert(conn, deliveries)
            least = func.min if conn.dialect.name == "sqlite" else func.least
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=[deliveries.c.target, deliveries.c.group_hash],
                    # a literal, not a parameter: PostgreSQL's generic plans cannot match a partial index to one
                    index_where=text("state = 'pending'"),
                    set_={
                        "notification_id": ins.excluded.notification_id,
                        "change": ins.excluded.change,
                        "silent": ins.excluded.silent,
                        "updated_at": ins.excluded.updated_at,
                        # if the worker took a retry back meanwhile, its back-off stands
                        "next_attempt_at": case(
                            (deliveries.c.attempts > 0, deliveries.c.next_attempt_at),
                            else_=least(deliveries.c.next_attempt_at, ins.excluded.next_attempt_at),
                        ),
                    },
                ),
                list(st.delivery_writes.values()),
            )
