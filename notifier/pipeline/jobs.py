"""What the intake hands from the request to the store's transaction (IntakeJob), and what it answers with
(IntakeResult)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from notifier.domain import AlertTimes, Claim, Severity
from notifier.routing import RouteMatch
from notifier.store.actions import AlertGroupRecord
from notifier.store.watchdogs import Sighting


def _waiting() -> bool:
    return False


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
    leased: list[Claim] = field(default_factory=list)  # messages handed straight to this process's worker
    key: str = ""  # the redelivery key this webhook holds once committed, until key_expires_at
    key_expires_at: float = 0.0
    news: bool = False  # an alert of the group fired anew for some receiver


@dataclass(slots=True)
class IntakeJob:
    """One validated webhook, ready to be committed. It keeps the raw body and what the decisions need, not the
    decoded payload: that can go as soon as the job is made (it holds several objects per alert)."""

    group_key: str
    am_receiver: str
    status: str
    alert_count: int
    raw: bytes
    states: dict[str, str]  # fingerprint -> status
    times: dict[str, AlertTimes]  # fingerprint -> its lifecycle: what orders this notification against others
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
    group: AlertGroupRecord | None = None  # with chat actions on: the group as /alerts lists it and silences match it
    watchdog: list[Sighting] = field(default_factory=list)  # a Watchdog notification: the sources it proves alive
    # Whether the sender has stopped waiting for the answer (closed the connection). Alertmanager counts such a
    # request as failed, and it must then not be stored: see IntakeStage.commit_batch.
    sender_gone: Callable[[], bool] = _waiting
