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
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from notifier import failpoints
from notifier.channels.registry import PLUGINS
from notifier.clock import Clock
from notifier.digest_schedule import DigestSchedule
from notifier.domain import ChangeRecord, Delivery, MessageKind
from notifier.metrics import NotifierMetrics
from notifier.settings import DigestSettings, ReceiverSettings, Settings
from notifier.store import Store, new_id
from notifier.store.actions import acks_between
from notifier.store.repository import insert_own_notification
from notifier.store.tables import deliveries, digest_items, digest_runs
from notifier.tasks import cancel_and_wait
from notifier.templates.context import format_duration

log = logging.getLogger("notifier.digest")


def record_items(conn: Connection, receiver: str, payload_alerts: list[dict[str, Any]], now: float) -> int:
    """Note each alert (one item per firing episode) for the receiver's next digest; returns how many."""
    n = 0
    for a in payload_alerts:
        key = (receiver, a["fingerprint"], a["startsAt"])
        ends = None if a["endsAt"].startswith("0001-") else a["endsAt"]
        row = conn.execute(
            select(digest_items.c.id).where(
                digest_items.c.receiver == key[0],
                digest_items.c.fingerprint == key[1],
                digest_items.c.starts_at == key[2],
            )
        ).first()
        values = {
            "status": a["status"],
            "ends_at": ends,
            "last_seen": now,
            "summary": a.get("annotations", {}).get("summary", ""),
            "labels": msgspec.json.encode(a.get("labels", {})).decode(),
            "generator_url": a.get("generatorURL", ""),
        }
        if row is None:
            conn.execute(
                digest_items.insert().values(
                    id=new_id(),
                    receiver=receiver,
                    fingerprint=a["fingerprint"],
                    starts_at=a["startsAt"],
                    alertname=a.get("labels", {}).get("alertname", "alert"),
                    severity=a.get("labels", {}).get("severity", "warning"),
                    first_seen=now,
                    **values,
                )
            )
        else:
            conn.execute(digest_items.update().where(digest_items.c.id == row[0]).values(**values))
        n += 1
    return n


def _iso_to_ts(s: str | None) -> float | None:
    if not s:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def build_digest(
    items: list[dict[str, Any]],
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
    for it in sorted(items, key=lambda i: (i["starts_at"], i["alertname"])):
        counts[it["severity"]] = counts.get(it["severity"], 0) + 1
        labels = msgspec.json.decode(it["labels"])
        name = " · ".join(v for v in (it["alertname"], labels.get("bot", ""), labels.get("symbol", "")) if v)
        s, e = _iso_to_ts(it["starts_at"]), _iso_to_ts(it["ends_at"])
        row = {
            "name": name,
            "severity": it["severity"],
            "summary": it["summary"],
            "start": local(s),
            "end": local(e),
            "duration": format_duration((e or end) - (s or end)),
            "url": it["generator_url"],
        }
        (fired_resolved if it["status"] == "resolved" else still).append(row)
        episodes.setdefault(it["fingerprint"], []).append(row)
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
        wake_worker: Any,
        interval: float = 15.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._wake = wake_worker
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

    def kick(self) -> None:
        self._kick.set()

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
        last = conn.execute(
            select(func.max(digest_runs.c.tick_at)).where(digest_runs.c.receiver == receiver.name)
        ).scalar()
        if last is not None and float(last) >= tick:
            return 0
        try:
            with conn.begin_nested():
                conn.execute(digest_runs.insert().values(receiver=receiver.name, tick_at=tick, ran_at=now))
        except IntegrityError:
            return 0  # another worker took this tick
        q = select(digest_items).where(digest_items.c.receiver == receiver.name, digest_items.c.last_seen <= tick)
        if last is not None:  # what happened since the last digest, and what is still firing from before
            q = q.where(or_(digest_items.c.last_seen > float(last), digest_items.c.status == "firing"))
        items = [dict(r) for r in conn.execute(q).mappings()]
        self._metrics.digest_items.set(len(items))
        if not items and not cfg.send_empty:
            return 0
        since = float(last) if last is not None else None
        acks = acks_between(conn, since, tick) if self._acks else []
        content = build_digest(items, since, tick, schedule.zone, acks)
        gk = f"digest:{receiver.name}"
        nid = insert_own_notification(
            conn,
            source="digest",
            group_key=gk,
            status="digest",
            count=len(items),
            payload=msgspec.json.encode(content).decode(),
            now=now,
        )
        for target, channel, _t in receiver.targets():
            if not PLUGINS[channel].digests:
                continue
            digest = Delivery.new(
                id=new_id(),
                notification_id=nid,
                receiver=receiver.name,
                target=target,
                channel=channel,
                group_key=gk,
                group_hash=f"digest-{tick:.0f}",
                change=ChangeRecord(),
                now=now,
                kind=MessageKind.DIGEST,
            )
            conn.execute(deliveries.insert(), digest.row())
        self._metrics.digests_sent.inc()
        log.info("digest for %s queued: %d items", receiver.name, len(items))
        return 1
