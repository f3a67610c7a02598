"""The notifier's vocabulary, shared by every stage: alerts, groups, messages, states and reasons. No I/O here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

ZERO_TIME_YEAR = 1  # Alertmanager sends endsAt=0001-01-01T00:00:00Z for a firing alert


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @classmethod
    def of(cls, labels: dict[str, str]) -> Severity:
        """The alert's severity label; an unknown or missing one counts as warning, so it is never silenced as info."""
        return cls.parse(labels.get("severity", ""))

    @classmethod
    def parse(cls, value: str) -> Severity:
        return _SEVERITY_NAMES.get(value) or _SEVERITY_NAMES.get(value.lower(), cls.WARNING)

    @classmethod
    def worst(cls, labels: Iterable[dict[str, str]]) -> Severity:
        """The most severe of these alerts' severity labels."""
        values = {lab.get("severity", "") for lab in labels}
        return min((cls.parse(v) for v in values), key=SEVERITY_RANK.__getitem__)


SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
_SEVERITY_NAMES = {s.value: s for s in Severity}


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"


class MessageKind(StrEnum):
    ALERT = "alert"
    TEST = "test"
    DIGEST = "digest"
    EDIT = "edit"  # a sent message shown again with its group's acknowledgement and silence (chat actions)
    CHART = "chart"  # a chart of the group's series, in reply to the group's message (charts)


class WebhookOutcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    INVALID = "invalid"
    UNAUTHORIZED = "unauthorized"
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"
    ABANDONED = "abandoned"  # the sender gave up waiting before it could be stored: not stored


class SuppressReason(StrEnum):
    """Why a notification was not sent (notifier_notifications_suppressed_total{reason})."""

    DUPLICATE = "duplicate"  # an HA peer's copy or a resend, within dedup.redelivery_window
    UNCHANGED = "unchanged"  # nothing new for the receiver, and its repeat interval has not passed
    QUIET_HOURS_DROP = "quiet_hours_drop"  # a route's quiet hours in `drop` mode
    QUIET_HOURS_RESOLVED = "quiet_hours_resolved"  # fired and resolved while held, and nobody was told it fired
    ACKNOWLEDGED = "acknowledged"  # a repeat of a group someone acknowledged from the chat


class ActionOutcome(StrEnum):
    """How a press or a command ended (notifier_chat_actions_total{outcome})."""

    DONE = "done"
    UNCHANGED = "unchanged"  # it was so already (pressed twice)
    REFUSED = "refused"  # the person may not act here, or the request was not genuine
    EXPIRED = "expired"  # an unknown or old button
    FAILED = "failed"  # Alertmanager could not be reached or refused


class ChatAction(StrEnum):
    """What a button or a command of the chat does to an alert group."""

    ACK = "ack"
    UNACK = "unack"
    SILENCE = "silence"
    UNSILENCE = "unsilence"  # the group's own silence
    EXPIRE = "expire"  # a silence listed by /silences, by its id
    COMMAND = "command"  # /alerts, /silences, /status, /help


class DeliveryOutcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    DEAD = "dead"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert of a group, as Alertmanager sent it."""

    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str
    fingerprint: str

    @property
    def severity(self) -> Severity:
        return Severity.of(self.labels)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "alert")


@dataclass(frozen=True, slots=True)
class AlertGroup:
    """One Alertmanager notification: a group of alerts under one groupKey."""

    receiver: str
    status: AlertStatus
    group_key: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str
    alerts: tuple[Alert, ...]
    truncated_alerts: int = 0

    @property
    def severity(self) -> Severity:
        """The most severe alert of the group decides how the group is treated."""
        if not self.alerts:
            return Severity.of(self.common_labels)
        return Severity.worst(a.labels for a in self.alerts)

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status is AlertStatus.FIRING)

    @property
    def resolved(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status is AlertStatus.RESOLVED)

    def labels_for_routing(self) -> dict[str, str]:
        """Group labels win over common labels, as Alertmanager's own routing saw them."""
        return {**self.common_labels, **self.group_labels}


@dataclass(frozen=True, slots=True)
class Change:
    """What changed in a group since its last delivery to one receiver."""

    new: int = 0
    resolved: int = 0
    still_firing: int = 0

    def describe(self) -> str:
        parts = []
        if self.new:
            parts.append(f"{self.new} new")
        if self.resolved:
            parts.append(f"{self.resolved} resolved")
        if self.still_firing:
            parts.append(f"{self.still_firing} still firing")
        return ", ".join(parts)


class AlertTimes(msgspec.Struct, array_like=True, frozen=True):
    """One alert's lifecycle as Alertmanager told it: when it started and when it ended (None while it fires), in
    unix seconds. Alertmanager gives a re-fired alert a start later than its previous end, so for one fingerprint
    these order its states (pipeline/decisions.order_states)."""

    starts: float
    ends: float | None = None

    @property
    def status(self) -> str:
        return "firing" if self.ends is None else "resolved"  # AlertStatus' values


class ChangeRecord(msgspec.Struct, omit_defaults=True, kw_only=True):
    """What an outbox message tells of its group, as stored with it (the `change` column): the change since the
    receiver's last delivery, the state it is measured against, and what the worker needs to build the message.
    Encoded and decoded here only."""

    new: int = 0
    resolved: int = 0
    still_firing: int = 0
    repeat: bool = False  # a repeat of an unchanged firing group (its repeat_interval passed)
    base: dict[str, str] | None = None  # fingerprint -> status at the last delivery; None: not measured (a summary)
    gone: list[dict[str, Any]] = msgspec.field(default_factory=list)  # alerts that left the group while it waited
    skip_if_resolved: bool = False  # quiet hours: no catch-up if the group fired and resolved inside the window
    edit_ref: str | None = None  # EDIT: the provider's reference of the message it edits; CHART: the one it answers
    edit_group: str | None = None  # EDIT, CHART: the hash of the group whose message it edits or answers
    # alerts of the notification that are stale copies (an Alertmanager peer's late state): fingerprint -> the newer
    # lifecycle known, which the message shows instead
    stale: dict[str, AlertTimes] = msgspec.field(default_factory=dict)
    note: str | None = None  # a line the message shows above its alerts (why an escalation step sent it)

    @classmethod
    def decode(cls, text: str | bytes | None) -> ChangeRecord:
        return _change_decoder.decode(text) if text else cls()

    def encode(self) -> str:
        return _change_encoder.encode(self).decode()

    def counts(self) -> Change:
        return Change(new=self.new, resolved=self.resolved, still_firing=self.still_firing)

    def with_counts(self, c: Change) -> ChangeRecord:
        return msgspec.structs.replace(self, new=c.new, resolved=c.resolved, still_firing=c.still_firing)


_change_decoder = msgspec.json.Decoder(ChangeRecord)
_change_encoder = msgspec.json.Encoder()


class GroupState(msgspec.Struct):
    """A group as last committed for delivery to one receiver (the `group_state` table): its alerts
    (fingerprint -> status) and when a message of it was last queued. What the next webhook is diffed against."""

    alerts: dict[str, str]
    last_sent_at: float


class GroupLifecycles(msgspec.Struct, kw_only=True):
    """What the intake knows of one group's alerts across notifications (the `group_lifecycles` table), so that a
    late copy from an Alertmanager peer cannot take the group back to an older state."""

    known: dict[str, AlertTimes]  # fingerprint -> the newest lifecycle known: current alerts, and those that left
    left: dict[str, float] = msgspec.field(default_factory=dict)  # fingerprint -> when it left the notifications

    def current(self) -> dict[str, str]:
        """Fingerprint -> status, as the newest notification that counted told it (its stale copies corrected):
        every known alert that has not left."""
        return {fp: t.status for fp, t in self.known.items() if fp not in self.left}


class Delivery(msgspec.Struct, kw_only=True):
    """One outbox row: one message of a group to one target (the `deliveries` table). Built by `Delivery.new` for
    a new message, and by `Delivery.from_row` from what the store read."""

    id: str
    notification_id: str  # the webhook (or the notifier's own summary or digest) whose state it tells
    receiver: str
    target: str
    channel: str
    group_key: str
    group_hash: str
    state: DeliveryState
    kind: MessageKind
    silent: bool
    change: str  # a ChangeRecord, encoded
    attempts: int
    parts_sent: int
    created_at: float
    updated_at: float
    next_attempt_at: float
    sent_at: float | None = None
    last_error: str | None = None
    lease_owner: str | None = None
    lease_until: float | None = None
    provider_ref: str | None = None

    @classmethod
    def new(
        cls,
        *,
        id: str,
        notification_id: str,
        receiver: str,
        target: str,
        channel: str,
        group_key: str,
        group_hash: str,
        change: ChangeRecord,
        now: float,
        kind: MessageKind = MessageKind.ALERT,
        silent: bool = False,
        not_before: float | None = None,
    ) -> Delivery:
        """A message waiting for its first attempt, due at `not_before` (default: now)."""
        return cls(
            id=id,
            notification_id=notification_id,
            receiver=receiver,
            target=target,
            channel=channel,
            group_key=group_key,
            group_hash=group_hash,
            state=DeliveryState.PENDING,
            kind=kind,
            silent=silent,
            change=change.encode(),
            attempts=0,
            parts_sent=0,
            created_at=now,
            updated_at=now,
            next_attempt_at=now if not_before is None else not_before,
        )

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Delivery:
        return cls(
            **{
                **row,
                "state": DeliveryState(row["state"]),
                "kind": MessageKind(row["kind"]),
                "silent": bool(row["silent"]),
                "parts_sent": int(row["parts_sent"] or 0),
            }
        )

    def row(self) -> dict[str, Any]:
        """The columns, as the store writes them."""
        out = msgspec.structs.asdict(self)
        out["state"], out["kind"] = self.state.value, self.kind.value
        return out


class Claim(msgspec.Struct):
    """A message leased to a worker, with what sending it needs: its notification's body as received (None when
    it is missing or cannot be read), the provider's reference of its group's first message on its target, and its
    change record, decoded once for the attempt."""

    delivery: Delivery
    payload: bytes | None
    thread_ref: str | None
    change: ChangeRecord

    @classmethod
    def of(cls, delivery: Delivery, payload: bytes | None, thread_ref: str | None) -> Claim:
        return cls(delivery, payload, thread_ref, ChangeRecord.decode(delivery.change))


class GroupActions(msgspec.Struct, frozen=True):
    """What people did to an alert group from the chat, as its messages show it."""

    acked_by: str | None = None
    acked_at: float | None = None
    silence_id: str | None = None
    silenced_by: str | None = None
    silenced_until: float | None = None
    silence_url: str | None = None


class ActionButton(msgspec.Struct, frozen=True):
    """A button that acts on the group: what it says, and the id of the stored action it stands for."""

    label: str
    action_id: str


class EventKind(StrEnum):
    WEBHOOK = "webhook"  # a notification from Alertmanager: accepted or a duplicate
    DECISION = "decision"  # what the notification meant for one receiver
    ATTEMPT = "attempt"  # a try at delivering a message to one target
    ACTION = "action"  # someone acted on the group from the chat
    ESCALATION = "escalation"  # a step of the route's escalation: due, fired, or the chain's end


class TimelineEvent(msgspec.Struct, kw_only=True):
    """One line of a group's timeline: when, what, about whom, the outcome, and why in words."""

    id: str
    at: float
    group_hash: str
    group_key: str
    kind: EventKind
    subject: str  # the receiver of a decision, the target of an attempt, the person of an action, or ""
    outcome: str
    text: str
    notification_id: str | None = None
    delivery_id: str | None = None

    def row(self) -> dict[str, Any]:
        out = msgspec.structs.asdict(self)
        out["kind"] = self.kind.value
        return out


@dataclass(frozen=True, slots=True)
class Message:
    """What a channel is asked to deliver: one group's state for one target, with threading and loudness."""

    delivery_id: str
    receiver: str
    target: str
    group: AlertGroup
    kind: MessageKind = MessageKind.ALERT
    silent: bool = False
    change: Change = field(default_factory=Change)
    thread_ref: str | None = None  # provider's reference of the group's first message on this target
    part: int = 0  # which part to start from when an earlier attempt delivered the first parts
    digest: dict[str, Any] | None = None  # a digest's content (kind DIGEST)
    minimal: bool = False  # send the minimal safe form: the rendered one was refused for its content
    actions: GroupActions = field(default_factory=GroupActions)  # acked or silenced from the chat, as shown
    buttons: tuple[ActionButton, ...] = ()  # chat actions offered (Telegram, Slack with a bot token)
    edit_ref: str | None = None  # kind EDIT: the provider's reference of the message to show again
    action_zone: str = "UTC"  # the time zone of the times in the action lines
    note: str | None = None  # a line shown above the alerts (ChangeRecord.note)
    chart: bytes | None = None  # a chart of the group's series (PNG) to show inside the message (email)


@dataclass(frozen=True, slots=True)
class RateRule:
    """A provider's limit on the bucket `key` (shared by every target that names it), as a channel declares it and
    the rate limiter keeps it. At most `count` messages in any `per` seconds; or, with `refills`, a bucket of `count`
    messages that refills one message every `per / count` seconds (after a burst, the next message may go as soon
    as one has come back, not only when the whole burst has aged out)."""

    key: str
    count: int
    per: float
    refills: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """What a channel got back: the provider's reference of the first message it sent, and how many parts."""

    ref: str | None
    parts: int = 1
