"""Email digests: when they are due (cron expressions or `every <duration>`, in a time zone), what goes in them, and
the scheduler that sends one per tick.

Items are collected at intake (one per alert and firing episode). At a tick, one transaction claims the tick (a
unique row per receiver and tick: exactly one digest per tick, also with several workers), reads the items seen
since the previous digest, and queues one email through the outbox. Ticks missed while the notifier was down give
one digest on start covering the whole gap, not one per missed tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from notifier import failpoints
from notifier.clock import Clock
from notifier.digest_schedule import DigestSchedule
from notifier.metrics import NotifierMetrics
from notifier.settings import DigestSettings, ReceiverSettings, Settings
from notifier.store import Store
from notifier.store import digests as stored
from notifier.store.actions import acks_between
from notifier.store.digests import DigestItem
from notifier.tasks import cancel_and_wait
from notifier.templates.context import format_duration

log = logging.getLogger("notifier.digest")


def _iso_to_ts(s: str | None) -> float | None:
    if not s:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def build_digest(
    items: list[DigestItem],
    start: float | None,
    end: float,
    zone: ZoneInfo,
    acks: list[tuple[dict[str, str], str, float]] | None = None,
) -> dict[str, Any]:
    """The digest's content, as plain data (the email templates render it). `acks`: acknowledgements made from the
    chat in the period (the group's labels, who, when)."""

    def local(ts: float | None) -> str:
        return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M") if ts is not None else ""

    counts: dict[str, int] = {}
    fired_resolved: list[dict[str, Any]] = []
    still: list[dict[str, Any]] = []
    episodes: dict[str, list[dict[str, Any]]] = {}
    for it in sorted(items, key=lambda i: (i.starts_at, i.alertname)):
        counts[it.severity] = counts.get(it.severity, 0) + 1
        name = " · ".join(v for v in (it.alertname, it.labels.get("bot", ""), it.labels.get("symbol", "")) if v)
        s, e = _iso_to_ts(it.starts_at), _iso_to_ts(it.ends_at)
        row = {
            "name": name,
            "severity": it.severity,
            "summary": it.summary,
            "start": local(s),
            "end": local(e),
            "duration": format_duration((e or end) - (s or end)),
            "url": it.generator_url,
        }
        (fired_resolved if it.status == "resolved" else still).append(row)
        episodes.setdefault(it.fingerprint, []).append(row)
    flapping = sorted(((len(v), v[0]["name"]) for v in episodes.values() if len(v) > 1), reverse=True)[:5]
    return {
        "period_start": local(start),
        "period_end": local(end),
        "timezone": zone.key,
        "counts": {k: counts.get(k, 0) for k in ("critical", "warning", "info") if counts.get(k)},
        "total": len(items),
        "resolved": fired_resolved,
        "firing": still,
        "flapping": [{"name": n, "episodes": c} for c, n in flapping],
        "acks": [
            {
                "name": " · ".join(v for v in (labels.get("alertname", ""), labels.get("bot", "")) if v) or "a group",
                "by": actor,
                "at": local(at),
            }
            for labels, actor, at in acks or []
        ],
    }


class DigestScheduler:
    """Sends each digest receiver's digest at its ticks."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Clock,
        metrics: NotifierMetrics,
        wake_worker: Callable[[], None],
        targets: dict[str, list[tuple[str, str]]],
        interval: float = 15.0,
    ) -> None:
        """`targets`: per receiver, the (key, channel) of its targets that take digests (email)."""
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._wake = wake_worker
        self._targets = targets
        self._interval = interval
        self._acks = settings.actions is not None  # chat actions on: the digest lists the acknowledgements
        self._receivers: list[tuple[ReceiverSettings, DigestSettings, DigestSchedule]] = [
            (r, r.digest, DigestSchedule.parse(r.digest.schedule, r.digest.timezone))
            for r in settings.receivers
            if r.digest is not None
        ]
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()

    def start(self) -> None:
        if self._receivers:
            self._task = asyncio.create_task(self._run(), name="digests")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            self._kick.clear()
            try:
                await self.run_due()
            except Exception:
                log.exception("digest round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=self._interval)

    async def run_due(self) -> int:
        """Queue every digest that is due now; returns how many were queued."""
        now = self._clock.now()
        queued = 0
        for receiver, cfg, schedule in self._receivers:
            tick = schedule.latest_tick(now)
            queued += await self._store.run_in_transaction(
                functools.partial(self._tick, receiver=receiver, cfg=cfg, schedule=schedule, tick=tick, now=now)
            )
        if queued:
            failpoints.reached("digest.queued")
            self._wake()
        return queued

    def _tick(
        self,
        conn: Connection,
        receiver: ReceiverSettings,
        cfg: DigestSettings,
        schedule: DigestSchedule,
        tick: float,
        now: float,
    ) -> int:
        taken, since = stored.take_tick(conn, receiver.name, tick, now)
        if not taken:
            return 0
        items = stored.items_for(conn, receiver.name, since, tick)
        self._metrics.digest_items.set(len(items))
        if not items and not cfg.send_empty:
            return 0
        acks = acks_between(conn, since, tick) if self._acks else []
        content = build_digest(items, since, tick, schedule.zone, acks)
        stored.queue_digest(conn, receiver.name, self._targets.get(receiver.name, []), content, tick, now)
        self._metrics.digests_sent.inc()
        log.info("digest for %s queued: %d items", receiver.name, len(items))
        return 1
