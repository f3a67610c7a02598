"""The pipeline's own watchdog. Prometheus' always-firing Watchdog alert, routed through Alertmanager to the
notifier, proves every minute that Prometheus, Alertmanager and the path to the notifier work. The intake records
each Watchdog as a sighting of its source (pipeline/watchdog.py) and never sends it as an alert. This ticker tells
the configured receivers directly when a source has been silent for longer than `expect_every`, and again when it
is back: one message per change (the change and its message are one transaction, the source's row locked on
PostgreSQL), across replicas and restarts."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import msgspec
from sqlalchemy.engine import Connection

from notifier.clock import Clock
from notifier.domain import ChangeRecord, Delivery
from notifier.metrics import NotifierMetrics
from notifier.settings import WatchdogSettings
from notifier.store import Store, new_id, watchdogs
from notifier.store.repository import insert_own_notification, queue_newest
from notifier.store.watchdogs import Source, SourceState
from notifier.tasks import cancel_and_wait, repeat
from notifier.templates.context import clock_time, format_duration

log = logging.getLogger("notifier.watchdog")
TICK = 1.0
SOURCE = "watchdog"  # the am_receiver of the notifier's own watchdog notifications


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Watchdog:
    """The watchdog ticker (see the module's docstring)."""

    def __init__(
        self,
        settings: WatchdogSettings,
        store: Store,
        clock: Clock,
        metrics: NotifierMetrics,
        targets: Mapping[str, list[tuple[str, str]]],
        *,
        zone: str = "UTC",
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._targets = targets
        self._zone = zone
        self._wake = wake
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="watchdog")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        await repeat(self.run_once, TICK, "watchdog check", log)

    async def run_once(self) -> int:
        """Check every source; returns how many changed state."""
        changed: list[Source] = await self._store.run_in_transaction(self.check)
        for s in changed:
            self._metrics.watchdog_missing.labels(s.name).set(1 if s.state is SourceState.MISSING else 0)
        if changed:
            self._wake()
        return len(changed)

    def check(self, conn: Connection) -> list[Source]:
        now = self._clock.now()
        every = float(self._settings.expect_every)
        changed = []
        for s in watchdogs.to_check(conn):
            if s.state is SourceState.OK and now - s.last_seen > every:
                since = clock_time(s.last_seen, self._zone)
                text = (
                    f"No Watchdog from {s.name} since {since} ({format_duration(now - s.last_seen)}): Prometheus or "
                    "Alertmanager is down, alerts are not reaching you"
                )
                self._tell(conn, s, "firing", text, now)
                watchdogs.change(conn, s.source, SourceState.MISSING, s.last_seen, now)
                changed.append(msgspec.structs.replace(s, state=SourceState.MISSING))
                log.error("%s", text)
            elif s.state is SourceState.MISSING and s.last_seen > s.changed_at:
                silent = format_duration(s.last_seen - (s.missing_since or s.last_seen))
                text = f"Watchdog from {s.name} back since {clock_time(s.last_seen, self._zone)}, silent for {silent}"
                self._tell(conn, s, "resolved", text, now)
                watchdogs.change(conn, s.source, SourceState.OK, None, now)
                changed.append(msgspec.structs.replace(s, state=SourceState.OK))
                log.warning("%s", text)
        return changed

    def _tell(self, conn: Connection, s: Source, status: str, text: str, now: float) -> None:
        """Queue the message to every receiver of the watchdog, as a notification of the notifier's own."""
        group_key = f"watchdog:{s.source[:16]}"
        labels = {"alertname": "WatchdogMissing", "severity": "critical", "source": s.name}
        started = s.missing_since if status == "resolved" and s.missing_since else s.last_seen  # silent since
        alert = {
            "status": status,
            "labels": labels,
            "annotations": {"summary": text},
            "startsAt": _iso(started),
            "endsAt": _iso(s.last_seen) if status == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": s.source[:16],
        }
        payload = {
            "version": "4",
            "receiver": SOURCE,
            "status": status,
            "groupKey": group_key,
            "truncatedAlerts": 0,
            "groupLabels": {"alertname": "WatchdogMissing", "source": s.name},
            "commonLabels": labels,
            "commonAnnotations": {"summary": text},
            "externalURL": "",
            "alerts": [alert],
        }
        nid = insert_own_notification(
            conn,
            source=SOURCE,
            group_key=group_key,
            status=status,
            count=1,
            payload=msgspec.json.encode(payload).decode(),
            now=now,
        )
        change = ChangeRecord(new=1) if status == "firing" else ChangeRecord(resolved=1)
        gh = hashlib.sha256(f"{SOURCE}\x00{group_key}".encode()).hexdigest()
        messages = [
            Delivery.new(
                id=new_id(),
                notification_id=nid,
                receiver=receiver,
                target=target,
                channel=channel,
                group_key=group_key,
                group_hash=gh,
                change=change,
                now=now,
            )
            for receiver in self._settings.receivers
            for target, channel in self._targets.get(receiver, [])
        ]
        queue_newest(conn, messages)
