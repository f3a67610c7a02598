"""Acknowledged on a phone: a Pushover emergency repeats until someone acknowledges it in the app. This poller reads
the receipt of each group's newest emergency (Pushover: no faster than every 5 s per receipt) and, once it says
acknowledged, acknowledges the group in the notifier -- as a press of Ack would: the chat messages of the group
show it, its escalation chain ends, and its timeline and the action log say who."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from functools import partial
from typing import Protocol

from sqlalchemy.engine import Connection

from notifier.channels import Acknowledged
from notifier.clock import Clock
from notifier.domain import EventKind, TimelineEvent
from notifier.errors import DeliveryError
from notifier.metrics import NotifierMetrics
from notifier.store import Store, new_id
from notifier.store import actions as store_actions
from notifier.store import escalations as chains
from notifier.store.escalations import OpenReceipt, open_receipts
from notifier.store.timeline import record
from notifier.tasks import cancel_and_wait, repeat

log = logging.getLogger("notifier.actions")
POLL_EVERY = 10.0  # seconds between two reads of one receipt (Pushover asks for no less than 5)
LOOK_BACK = 10800.0  # an emergency repeats for at most 3 hours; an older receipt has expired


class AcknowledgingChannel(Protocol):
    name: str

    async def acknowledgement(self, ref: str) -> Acknowledged | None: ...


class PhoneAcknowledgements:
    """The receipt poller (see the module's docstring)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        metrics: NotifierMetrics,
        channels: Mapping[str, AcknowledgingChannel],
        prefix: str,
        editable: Collection[str],
        *,
        timeline: bool = True,
        wake: Callable[[], None] = lambda: None,
        poll_every: float = POLL_EVERY,
    ) -> None:
        """`channels`: target key -> its channel, for the targets that take acknowledgements; `prefix`: how their
        references of an emergency begin; `editable`: the chat targets whose messages show an acknowledgement."""
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._channels = channels
        self._prefix = prefix
        self._editable = list(editable)
        self._record = timeline
        self._wake = wake
        self._poll_every = poll_every
        self._polled: dict[str, float] = {}  # receipt reference -> when it was last read
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="phone-acknowledgements")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        await repeat(self.run_once, min(self._poll_every, 5.0), "reading acknowledgements", log)

    async def run_once(self) -> int:
        """Read the receipts that are due; returns how many groups were acknowledged."""
        now = self._clock.now()
        targets = list(self._channels)
        found: list[OpenReceipt] = await self._store.run_in_transaction(
            lambda conn: open_receipts(conn, targets, self._prefix, now - LOOK_BACK)
        )
        self._polled = {r.ref: self._polled[r.ref] for r in found if r.ref in self._polled}
        acknowledged = 0
        for r in found:
            if now - self._polled.get(r.ref, 0.0) < self._poll_every:
                continue
            self._polled[r.ref] = now
            try:
                ack = await self._channels[r.target].acknowledgement(r.ref)
            except DeliveryError as exc:
                log.info("the receipt of %s on %s could not be read: %s", r.group_key, r.target, exc)
                continue
            if ack is not None and await self._store.run_in_transaction(partial(self._ack, r=r, ack=ack)):
                acknowledged += 1
                log.info("%s acknowledged on a phone by %s", r.group_key, ack.by)
        if acknowledged:
            self._wake()
        return acknowledged

    def _ack(self, conn: Connection, *, r: OpenReceipt, ack: Acknowledged) -> bool:
        channel = self._channels[r.target].name
        now = self._clock.now()
        if not store_actions.set_ack(conn, r.group_hash, ack.by, channel, min(ack.at, now)):
            return False
        chains.take_back_pages(conn, r.group_hash, now, f"acknowledged by {ack.by} on {channel}", timeline=self._record)
        store_actions.queue_edits(conn, r.group_hash, self._editable, now)
        text = f"Acknowledged by {ack.by} on {channel} ({r.target})."
        store_actions.log_action(
            conn,
            now=now,
            channel=channel,
            actor=ack.by,
            action="ack",
            group_hash=r.group_hash,
            outcome="done",
            detail=text,
        )
        self._metrics.chat_actions.labels(channel, "ack", "done").inc()
        if self._record:
            event = TimelineEvent(
                id=new_id(),
                at=now,
                group_hash=r.group_hash,
                group_key=r.group_key,
                kind=EventKind.ACTION,
                subject=ack.by,
                outcome="ack",
                text=text,
            )
            record(conn, [event])
        return True
