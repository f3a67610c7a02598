"""The intake stages for one webhook, run inside the group committer's transaction:

idempotency (redelivery key) -> store the notification -> route to receivers -> per-receiver dedup against what was
last committed for delivery -> quiet hours (defer / silent / drop) -> enqueue one message per target, merging into
a message of the same group that still waits.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.api.schema import WebhookPayload, raw_redelivery_tuples, to_group
from notifier.clock import Clock
from notifier.domain import AlertGroup, AlertStatus, MessageKind, redelivery_key
from notifier.metrics import NotifierMetrics
from notifier.routing import RouteMatch, Router
from notifier.schedules import Schedule
from notifier.settings import Settings
from notifier.store import new_id
from notifier.store import repository as repo

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


def _alert_states(group: AlertGroup) -> dict[str, str]:
    return {a.fingerprint: a.status.value for a in group.alerts}


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


class IntakeStage:
    """Turns one validated webhook into stored rows; pure decisions, all writes on the connection it is handed."""

    def __init__(self, settings: Settings, router: Router, clock: Clock, metrics: NotifierMetrics) -> None:
        self._settings = settings
        self._router = router
        self._clock = clock
        self._metrics = metrics
        self._schedules = {name: Schedule.from_settings(s) for name, s in settings.quiet_hours.items()}

    async def run(self, conn: AsyncConnection, payload: WebhookPayload, raw: bytes) -> IntakeResult:
        now = self._clock.now()
        group = to_group(payload)
        nid = new_id()
        key = redelivery_key(payload.groupKey, payload.receiver, raw_redelivery_tuples(payload))
        holder = await repo.claim_intake_key(conn, key, nid, now, self._settings.dedup.redelivery_window)
        if holder is not None:
            return IntakeResult(holder, True, len(payload.alerts))
        await repo.insert_notification(
            conn,
            {
                "id": nid,
                "received_at": now,
                "am_receiver": payload.receiver,
                "group_key": payload.groupKey,
                "status": payload.status,
                "alert_count": len(payload.alerts),
                "redelivery_key": key,
                "payload": raw.decode("utf-8"),
            },
        )
        result = IntakeResult(nid, False, len(payload.alerts))
        gh = group_hash(payload.receiver, payload.groupKey)
        for match in self._router.match(group.labels_for_routing()):
            result.receivers.append(match.receiver)
            await self._route_to(conn, match, group, gh, nid, now, result)
        return result

    async def _route_to(
        self,
        conn: AsyncConnection,
        match: RouteMatch,
        group: AlertGroup,
        gh: str,
        nid: str,
        now: float,
        result: IntakeResult,
    ) -> None:
        receiver = self._settings.receiver(match.receiver)
        current = _alert_states(group)
        state = await repo.get_group_state(conn, receiver.name, gh)
        base: dict[str, str] = msgspec.json.decode(state["alerts"]) if state else {}
        change = diff_states(base, current)
        repeat = match.repeat_interval if match.repeat_interval is not None else DEFAULT_REPEAT_INTERVAL
        repeat_due = (
            state is not None and repeat > 0 and change["still_firing"] > 0 and now - state["last_sent_at"] >= repeat
        )
        send_for_resolved = change["resolved"] > 0 and receiver.send_resolved
        if not (change["new"] or send_for_resolved or repeat_due):
            reason = "unchanged"
            self._metrics.suppressed(reason)
            result.suppressed[reason] = result.suppressed.get(reason, 0) + 1
            if change["resolved"]:  # not sent (send_resolved: false), but the next firing must count as new
                await repo.put_group_state(
                    conn, receiver.name, gh, group.group_key, current, state["last_sent_at"] if state else now
                )
            return

        silent = False
        not_before = now
        qh = match.quiet_hours
        if qh is not None and group.severity.value not in qh.bypass_severities:
            window = self._schedules[qh.schedule].active_window(now)
            if window is not None:
                if qh.mode == "drop":
                    self._metrics.suppressed("quiet_hours_drop")
                    result.suppressed["quiet_hours_drop"] = result.suppressed.get("quiet_hours_drop", 0) + 1
                    return
                if qh.mode == "silent":
                    silent = True
                else:  # defer: held until the window ends, then one catch-up with the newest state
                    not_before = window[1]
                    self._metrics.deferred()
        await repo.put_group_state(conn, receiver.name, gh, group.group_key, current, now)

        for target, channel, settings in receiver.targets():
            if channel == "telegram" and group.severity.value in settings.silent_severities:
                target_silent = True
            else:
                target_silent = silent
            pending = await repo.find_pending(conn, target, gh)
            info: dict[str, Any] = {"base": base, "repeat": bool(repeat_due and not change["new"]), **change}
            if pending is not None:
                # merge: keep the base of the waiting message, so the catch-up says everything since the last
                # delivery, and carry alerts that left the group meanwhile (fired and resolved while held)
                old = msgspec.json.decode(pending["change"])
                info["base"] = old.get("base", base)
                info.update(diff_states(info["base"], current))
                info["gone"] = await self._carry_gone(conn, pending, old, group)
                target_silent = target_silent and bool(pending["silent"])
            await repo.enqueue(
                conn,
                repo.PendingDelivery(
                    id=new_id(),
                    notification_id=nid,
                    receiver=receiver.name,
                    target=target,
                    channel=channel,
                    group_key=group.group_key,
                    group_hash=gh,
                    kind=MessageKind.ALERT.value,
                    silent=target_silent,
                    change=info,
                    not_before=not_before,
                ),
                now,
            )
            result.queued += 1

    async def _carry_gone(
        self, conn: AsyncConnection, pending: dict[str, Any], old: dict[str, Any], group: AlertGroup
    ) -> list[dict[str, Any]]:
        """Alerts of the waiting message's state that the new state no longer lists (Alertmanager drops resolved
        alerts from later notifications): kept so that the catch-up still shows them."""
        gone: list[dict[str, Any]] = list(old.get("gone", []))
        present = {a.fingerprint for a in group.alerts}
        prev = await repo.get_notification(conn, pending["notification_id"])
        if prev is not None:
            for a in msgspec.json.decode(prev["payload"])["alerts"]:
                if a["fingerprint"] not in present and all(g["fingerprint"] != a["fingerprint"] for g in gone):
                    gone.append(a)
        return [g for g in gone if g["fingerprint"] not in present]
