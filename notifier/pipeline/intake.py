"""The intake, in two halves.

`prepare` runs in the request: decode what the decisions need of the payload, compute its redelivery key, route it
to receivers. `commit_batch` runs in the store's group commit (`Store.run_batched`) for every webhook that arrived
meanwhile: it reads the state the batch needs in a few queries (store/intake.py), decides each webhook in arrival
order against that state in memory (pipeline/decisions.py) -- idempotency, per-receiver dedup, quiet hours,
coalescing into a message of the same group that still waits -- and writes the outcome with a few bulk statements.
Writes per batch, not per webhook, are what let durable intake keep pace with validation alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy.engine import Connection

from notifier.alertmanager import WebhookPayload, correct_alerts, summarize
from notifier.clock import Clock
from notifier.domain import (
    Claim,
    Delivery,
    DeliveryState,
    EventKind,
    Severity,
    SuppressReason,
    TimelineEvent,
)
from notifier.errors import SenderGone
from notifier.metrics import NotifierMetrics
from notifier.pipeline.decisions import (
    Ordered,
    QuietNow,
    ReceiverDecision,
    Verdict,
    coalesce,
    decide,
    order_states,
    quiet_hours_now,
)
from notifier.pipeline.explain import UTC_ZONE, decision_event, duplicate_text, stale_text
from notifier.pipeline.groups import alert_names, as_ordered, group_record
from notifier.pipeline.jobs import IntakeJob, IntakeResult, group_hash
from notifier.pipeline.watchdog import sightings
from notifier.routing import RouteMatch, Router
from notifier.schedules import Schedule
from notifier.settings import Settings
from notifier.store import actions as store_actions
from notifier.store import new_id
from notifier.store.actions import AlertGroupRecord
from notifier.store.digests import DigestItem
from notifier.store.escalations import Arm, Step
from notifier.store.intake import IntakeQueries, Snapshot, StoredNotification, Writes
from notifier.store.payloads import pack
from notifier.store.redelivery import RedeliveryKeys

log = logging.getLogger("notifier.intake")


class IntakeStage:
    """Turns validated webhooks into stored rows."""

    def __init__(
        self,
        settings: Settings,
        router: Router,
        clock: Clock,
        metrics: NotifierMetrics,
        queries: IntakeQueries,
        keys: RedeliveryKeys,
        lease_to: Callable[[], tuple[str, int]] | None = None,
        silent: Mapping[str, frozenset[Severity]] | None = None,
    ) -> None:
        """`lease_to` names the local worker and how many messages it can take now: a message that is due at once
        is then leased to it in the intake transaction and handed over in memory, saving a claim round trip.
        `silent`: per target, the severities its channel delivers without a sound (Telegram's
        silent_severities)."""
        self._silent = silent or {}
        self._lease_to = lease_to
        self._settings = settings
        self._router = router
        self._clock = clock
        self._metrics = metrics
        self._queries = queries
        self._keys = keys
        self._schedules = {name: Schedule.from_settings(s) for name, s in settings.quiet_hours.items()}
        self._receivers = {r.name: r for r in settings.receivers}
        self._targets = {r.name: r.targets() for r in settings.receivers}
        self._actions_on = settings.actions is not None
        self._record = settings.storage.timeline
        # alert_groups: what /alerts and the web view list, and what a silence from the chat matches
        self._groups_on = self._actions_on or settings.ui is not None
        self._watchdog = settings.watchdog.alertname if settings.watchdog is not None else ""

    def prepare(self, payload: WebhookPayload, raw: bytes) -> IntakeJob:
        # no per-alert objects here: what the decisions need is each alert's state and the group's severity
        summary = summarize(payload)
        gh = group_hash(payload.receiver, payload.groupKey)
        seen = sightings(payload, self._watchdog, self._clock.now()) if self._watchdog else None
        # the Watchdog is proof of life, never an alert: stored, and routed nowhere
        matches = self._router.match({**payload.commonLabels, **payload.groupLabels}) if seen is None else []
        group = group_record(payload, gh, summary.severity, matches) if self._groups_on and seen is None else None
        return IntakeJob(
            payload.groupKey,
            payload.receiver,
            payload.status,
            len(payload.alerts),
            raw,
            summary.states,
            summary.times,
            summary.counts,
            summary.severity,
            summary.key,
            gh,
            matches,
            pack(raw),
            group=group,
            watchdog=seen or [],
        )

    def commit_batch(self, conn: Connection, jobs: list[IntakeJob]) -> list[IntakeResult | Exception]:
        now = self._clock.now()
        hashes = {j.group_hash for j in jobs}
        self._queries.lock_groups(conn, hashes)
        receivers = {m.receiver for j in jobs for m in j.matches}
        targets = {t for r in receivers for t, _, _ in self._targets[r]}
        holders = self._keys.live(conn, list({j.key for j in jobs}), now)
        snapshot = self._queries.load(conn, receivers, targets, hashes)
        acked = store_actions.acked(conn, hashes) if self._actions_on else set()
        writes = Writes(now=now)
        lease = _Lease(*self._lease_to()) if self._lease_to else _Lease("", 0)
        results: list[IntakeResult | Exception] = []
        held: dict[str, str] = {}
        for job in jobs:
            if job.sender_gone():
                results.append(self._abandoned(job, now, writes))
                continue
            ordered = order_states(snapshot.lifecycles.get(job.group_hash), job.times, now, job.states)
            holder = holders.get(job.key)
            # A copy of a notification already stored changes nothing, unless the group moved on since and this copy
            # would take it somewhere else: then it is decided like any notification (and its key keeps its holder).
            if holder is not None and not ordered.changes_state:
                results.append(IntakeResult(holder, True, job.alert_count))
                writes.watchdog.extend(job.watchdog)  # Alertmanager's repeat of the Watchdog: alive all the same
                if self._record:
                    window = self._settings.dedup.redelivery_window
                    writes.events.append(
                        self._event(job, now, EventKind.WEBHOOK, "", "duplicate", duplicate_text(holder, window))
                    )
                continue
            try:
                result = self._decide(job, ordered, snapshot, writes, lease, now, job.group_hash in acked)
            except Exception as exc:
                log.exception("intake of %s failed", job.group_key)
                results.append(exc)
                continue
            if holder is None:
                holders[job.key] = held[job.key] = result.notification_id
            else:
                result.key = ""  # the key keeps its holder
            results.append(result)
        self._keys.hold(conn, held, now, now + self._settings.dedup.redelivery_window)
        self._queries.write(conn, writes)
        if self._groups_on:
            self._record_groups(conn, jobs, results, now)
        return results

    def _abandoned(self, job: IntakeJob, now: float, writes: Writes) -> SenderGone:
        """A webhook whose sender stopped waiting while it waited for the store (Alertmanager gives up on a request
        at its flush's deadline, and closes it). Alertmanager counts that notification as not delivered: when its
        group then resolves with nothing else firing, it concludes the receiver never heard of it and sends nothing.
        Stored, it would leave the chat showing a firing that is never resolved; not stored, Alertmanager's next
        flush tells the group as it is."""
        log.warning(
            "webhook for %s not stored: its sender stopped waiting for the answer (Alertmanager sends the group's "
            "state again with its next flush)",
            job.group_key,
        )
        if self._record:
            text = "not stored: the sender stopped waiting before it could be (Alertmanager counts it as failed)"
            writes.events.append(self._event(job, now, EventKind.WEBHOOK, "", "abandoned", text))
        return SenderGone("the sender stopped waiting before the webhook could be stored")

    def _record_groups(
        self, conn: Connection, jobs: list[IntakeJob], results: list[IntakeResult | Exception], now: float
    ) -> None:
        """The groups as their newest webhooks tell them. With chat actions, a group that resolved is no longer
        acknowledged nor silenced from the chat, and one whose alert fired anew is no longer acknowledged."""
        groups: dict[str, AlertGroupRecord] = {}
        resolved: set[str] = set()
        changed: set[str] = set()
        for job, result in zip(jobs, results, strict=True):
            if not isinstance(result, IntakeResult) or result.duplicate or job.group is None:
                continue
            groups[job.group_hash] = msgspec.structs.replace(job.group, updated_at=now)
            if job.group.firing == 0:
                resolved.add(job.group_hash)
            elif result.news:
                changed.add(job.group_hash)
        store_actions.record_groups(conn, list(groups.values()))
        if self._actions_on:
            store_actions.clear_acks(conn, resolved, silences=True)
            store_actions.clear_acks(conn, changed - resolved)

    def committed(self, results: list[IntakeResult | Exception]) -> None:
        """The store committed these webhooks (`Batch.on_commit`): their redelivery keys now count."""
        by_expiry: dict[float, dict[str, str]] = {}
        for r in results:
            if isinstance(r, IntakeResult) and not r.duplicate and r.key:
                by_expiry.setdefault(r.key_expires_at, {})[r.key] = r.notification_id
        for expires_at, held in by_expiry.items():
            self._keys.committed(held, expires_at)

    def _decide(
        self,
        job: IntakeJob,
        ordered: Ordered,
        snapshot: Snapshot,
        writes: Writes,
        lease: _Lease,
        now: float,
        acked: bool = False,
    ) -> IntakeResult:
        """One webhook, against the batch's state as the webhooks before it left it. Its effects are applied to
        that state and queued for writing only once it is wholly decided: one that fails leaves no trace."""
        nid = new_id()
        window = self._settings.dedup.redelivery_window
        result = IntakeResult(nid, False, job.alert_count, key=job.key, key_expires_at=now + window)
        group_updates: dict[tuple[str, str], Any] = {}
        messages: dict[tuple[str, str], Delivery] = {}
        digests: list[DigestItem] = []
        events: list[TimelineEvent] = []  # a line per receiver: what this notification meant for it, and why
        states = ordered.states  # the group as this notification tells it, its stale copies corrected
        if ordered.stale or ordered.left_out:
            self._metrics.stale_alerts.inc(len(ordered.stale) + len(ordered.left_out))
            if self._record:
                names = alert_names(job.raw, ordered.stale)
                text = stale_text(names, ordered.stale, ordered.left_out)
                events.append(self._event(job, now, EventKind.WEBHOOK, "", "stale", text, nid))
        fired_on: set[str] = set()  # routes with escalation steps on which an alert fired anew
        for match in job.matches:
            receiver = self._receivers[match.receiver]
            result.receivers.append(receiver.name)
            quiet = quiet_hours_now(match.quiet_hours, self._schedules, job.severity, now)
            decision = decide(
                snapshot.groups.get((receiver.name, job.group_hash)),
                states,
                now,
                repeat_interval=match.repeat_interval,
                send_resolved=receiver.send_resolved,
                quiet=quiet,
                digest=match.digest,
                acked=acked,
            )
            if decision.change.new:
                result.news = True
                if match.escalation:
                    fired_on.add(match.route_path)
            prior = snapshot.groups.get((receiver.name, job.group_hash))
            if decision.state is not None:
                group_updates[(receiver.name, job.group_hash)] = decision.state
            coalesced: list[str] = []  # the waiting messages this state went into
            why = _Why(decision, match, quiet, prior.last_sent_at if prior is not None else None, coalesced)
            if decision.verdict is Verdict.SUPPRESS:
                assert decision.reason is not None
                self._suppress(decision.reason, result)
                self._explain(events, job, now, nid, why)
                continue
            if decision.verdict is Verdict.DIGEST:
                if job.alerts_raw is None:
                    job.alerts_raw = correct_alerts(msgspec.json.decode(job.raw)["alerts"], ordered.stale)
                digests += [DigestItem.of(receiver.name, a, now) for a in job.alerts_raw]
                self._explain(events, job, now, nid, why)
                continue
            if decision.deferred:
                self._metrics.deferred()
            for target, channel, _settings in self._targets[receiver.name]:
                message = Delivery.new(
                    id=new_id(),
                    notification_id=nid,
                    receiver=receiver.name,
                    target=target,
                    channel=channel,
                    group_key=job.group_key,
                    group_hash=job.group_hash,
                    change=decision.change_record(ordered.stale),
                    now=now,
                    silent=decision.silent or job.severity in self._silent.get(target, frozenset()),
                    not_before=decision.not_before,
                )
                waiting = snapshot.pending.get((target, job.group_hash))
                if waiting is not None:
                    body = snapshot.payloads.get(waiting.notification_id)
                    alerts = msgspec.json.decode(body)["alerts"] if body is not None else []
                    message = coalesce(waiting, message, states, alerts)
                    coalesced.append(waiting.id)
                messages[(target, job.group_hash)] = message
            self._explain(events, job, now, nid, why)
        # decided: make its effects visible to the next webhook of the batch, and queue the writes
        if snapshot.lifecycles.get(job.group_hash) != ordered.lifecycles:  # a repeat of the same state writes none
            snapshot.lifecycles[job.group_hash] = writes.lifecycles[job.group_hash] = ordered.lifecycles
        if (ordered.stale or ordered.left_out) and job.group is not None:
            job.group = as_ordered(job.group, job.times, ordered)
        for key, state in group_updates.items():
            snapshot.groups[key] = state
            writes.groups[key] = (job.group_key, state)
        for key, message in messages.items():
            if message.next_attempt_at <= now and message.attempts == 0 and key not in snapshot.pending:
                message = self._lease(message, key, snapshot, lease, job, result, now)
            if message.state is DeliveryState.SENDING:
                snapshot.sending.add(key)
                writes.deliveries[(*key, message.id)] = message
            else:
                snapshot.pending[key] = message
                writes.deliveries[key] = message
            result.queued += 1
        writes.digest_items.extend(digests)
        writes.events.extend(events)
        writes.escalations.extend(self._chains(job, nid, states, fired_on, bool(ordered.stale or ordered.left_out)))
        writes.watchdog.extend(job.watchdog)
        snapshot.payloads[nid] = job.raw
        text, packed = job.stored
        writes.notifications.append(
            StoredNotification(
                id=nid,
                received_at=now,
                am_receiver=job.am_receiver,
                group_key=job.group_key,
                status=job.status,
                alert_count=job.alert_count,
                redelivery_key=job.key,
                payload=text,
                payload_packed=packed,
            )
        )
        return result

    @staticmethod
    def _chains(job: IntakeJob, nid: str, states: Mapping[str, str], fired_on: set[str], stale_copy: bool) -> list[Arm]:
        """What this notification tells the escalation chains of its routes that have steps."""
        routes = {m.route_path: m for m in job.matches if m.escalation}
        if not routes:
            return []
        resolved = not any(s == "firing" for s in states.values())
        return [
            Arm(
                group_hash=job.group_hash,
                route_path=path,
                group_key=job.group_key,
                notification_id=nid,
                steps=tuple(Step(float(s.after), tuple(s.receivers), s.quiet_hours == "respect") for s in m.escalation),
                route_receivers=m.route_receivers,
                quiet_schedule=m.quiet_hours.schedule if m.quiet_hours is not None else None,
                fired=path in fired_on,
                resolved=resolved,
                stale_copy=stale_copy,
            )
            for path, m in routes.items()
        ]

    def _explain(self, events: list[TimelineEvent], job: IntakeJob, now: float, nid: str, why: _Why) -> None:
        """The decision's line of the group's timeline, when the timeline is kept."""
        if not self._record:
            return
        quiet = why.quiet
        zone = self._schedules[quiet.schedule].zone if quiet is not None else UTC_ZONE
        receiver = why.match.receiver
        targets = [t for t, _, _ in self._targets[receiver]]
        outcome, text = decision_event(why.decision, why.match, quiet, zone, why.prior_sent_at, targets, why.coalesced)
        events.append(self._event(job, now, EventKind.DECISION, receiver, outcome.value, text, nid))

    @staticmethod
    def _event(
        job: IntakeJob, now: float, kind: EventKind, subject: str, outcome: str, text: str, nid: str | None = None
    ) -> TimelineEvent:
        return TimelineEvent(
            id=new_id(),
            at=now,
            group_hash=job.group_hash,
            group_key=job.group_key,
            kind=kind,
            subject=subject,
            outcome=outcome,
            text=text,
            notification_id=nid,
        )

    def _lease(
        self,
        message: Delivery,
        key: tuple[str, str],
        snapshot: Snapshot,
        lease: _Lease,
        job: IntakeJob,
        result: IntakeResult,
        now: float,
    ) -> Delivery:
        """A new message that is due now goes straight to the local worker, if it has room and no message of the
        group is on its way to that target (a group's messages go out in order)."""
        if lease.capacity <= 0 or key in snapshot.sending:
            return message
        lease.capacity -= 1
        leased = msgspec.structs.replace(
            message,
            state=DeliveryState.SENDING,
            lease_owner=lease.owner,
            lease_until=now + self._settings.delivery.lease,
        )
        result.leased.append(Claim.of(leased, job.raw, snapshot.threads.get(key)))
        return leased

    def _suppress(self, reason: SuppressReason, result: IntakeResult) -> None:
        self._metrics.suppressed(reason)
        result.suppressed[reason] = result.suppressed.get(reason, 0) + 1


@dataclass(frozen=True, slots=True)
class _Why:
    """What a receiver's decision was made of, for its line in the timeline."""

    decision: ReceiverDecision
    match: RouteMatch
    quiet: QuietNow | None
    prior_sent_at: float | None
    coalesced: list[str]


@dataclass(slots=True)
class _Lease:
    """The local worker and how many messages it can still take in this batch."""

    owner: str
    capacity: int
