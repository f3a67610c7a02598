"""The outbox worker: claims due messages, renders and sends them through their target's channel, and records the
outcome. Retries follow the provider's retry-after or back off exponentially; after `max_attempts` or `max_age` a
message goes `dead` with its last error, where the operator API shows it. One bad target never blocks the others:
each message is its own task, bounded by `concurrency`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections.abc import Awaitable, Callable

from sqlalchemy.engine import Connection

from notifier import failpoints
from notifier.channels import Channel
from notifier.channels.registry import PLUGINS
from notifier.clock import Clock
from notifier.delivery.charts import ChartFollowUps
from notifier.delivery.lease import keep_for_the_send
from notifier.delivery.ratelimit import RateLimiter, with_headroom
from notifier.delivery.retry import retry_delay
from notifier.delivery.storms import collapse_storm
from notifier.delivery.turns import Turn, Turns
from notifier.domain import (
    AlertStatus,
    Claim,
    Delivery,
    DeliveryOutcome,
    DeliveryReceipt,
    Message,
    MessageKind,
    SuppressReason,
    TimelineEvent,
)
from notifier.errors import ContentRejected, DeliveryError, PermanentError, RetryableError, StoreUnavailable
from notifier.messages import build_message
from notifier.metrics import NotifierMetrics
from notifier.redaction import redact
from notifier.settings import Settings
from notifier.store import Store
from notifier.store import ratelimit as slots
from notifier.store import repository as repo
from notifier.store.timeline import attempt_line, record
from notifier.tasks import cancel_and_wait
from notifier.templates.context import format_duration

log = logging.getLogger("notifier.delivery")
GAUGE_INTERVAL = 5.0  # seconds between outbox gauge queries
Decorate = Callable[[Delivery, str, Message, float], Awaitable[Message]]


class DeliveryWorker:
    """Drains the outbox into the channels."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        channels: dict[str, Channel],
        clock: Clock,
        metrics: NotifierMetrics,
        limiter: RateLimiter,
        owner: str | None = None,
        decorate: Decorate | None = None,
        charts: ChartFollowUps | None = None,
    ) -> None:
        """`decorate`, with chat actions on: what a group's message shows of them (who acknowledged or silenced it)
        and the buttons it offers, given the delivery, the group it is about and the message. `charts`, with
        charts on: the chart that follows a group's message."""
        self._decorate = decorate
        self._charts = charts
        self._store = store
        self._settings = settings
        self._d = settings.delivery
        self._channels = channels
        self._clock = clock
        self._metrics = metrics
        self._limiter = limiter
        self.owner = owner or f"{socket.gethostname()}:{settings.server.port}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._turns = Turns()
        self._stopping = False
        self._send_resolved = {r.name: r.send_resolved for r in settings.receivers}
        self._record = settings.storage.timeline

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        self._wake.set()

    def lease_offer(self) -> tuple[str, int]:
        """Who intake may lease new messages to, and how many it can take now (0 when not running)."""
        if not self.running or self._stopping:
            return self.owner, 0
        return self.owner, max(0, self._d.concurrency - len(self._inflight))

    def accept(self, claims: list[Claim]) -> None:
        """Messages intake leased to this worker in its transaction: send them now, no claim needed."""
        if not self._stopping:  # else their lease runs out, or the next start on SQLite hands them back
            self._start(claims)

    async def start(self) -> None:
        # SQLite serves one process: whatever a previous run left half-sent is ours to send again, now. On
        # PostgreSQL, what our own previous incarnation (same owner id: host and port) leased is ours too; other
        # replicas' leases are taken over when they run out.
        try:
            await self._release(all_owners=self._store.single_process)
        except Exception as exc:
            # never a failed start over the outbox's own rows: what cannot be taken back now is taken over when its
            # lease runs out, like a dead replica's
            log.error(
                "could not take back the messages a previous run was sending (%s); they are retried when "
                "their lease runs out",
                redact(str(exc)),
            )
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="delivery-worker")
        self._metrics.worker_up.set(1)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; give messages in flight `grace` seconds, then cancel them and hand their rows back."""
        self._stopping = True
        self._wake.set()
        await cancel_and_wait(self._task)
        self._task = None
        if self._inflight:
            _done, pending = await asyncio.wait(self._inflight, timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        try:
            await self._release(all_owners=False)
        except StoreUnavailable:
            log.warning("could not hand back leased messages; they are retaken when their lease runs out")
        self._metrics.worker_up.set(0)

    async def _release(self, *, all_owners: bool) -> None:
        owner = None if all_owners else self.owner
        taken = await self._store.run_in_transaction(lambda conn: repo.release_leases(conn, owner))
        if taken:
            log.info("took back %d messages that were being sent; they are sent again", taken)

    async def _run(self) -> None:
        last_gauges = 0.0
        while not self._stopping:
            self._wake.clear()  # before claiming: a wake-up that comes while we claim is not lost
            try:
                free_before = self._d.concurrency - len(self._inflight)
                claimed = await self._claim()
                now = self._clock.now()
                if now - last_gauges >= GAUGE_INTERVAL or now < last_gauges:
                    await self._update_gauges()
                    last_gauges = now
                if claimed and claimed >= free_before and len(self._inflight) < self._d.concurrency:
                    continue  # the claim was full: there may be more due right now
                timeout = await self._until_next_due()
            except StoreUnavailable as exc:
                log.warning("outbox unavailable: %s", exc)
                timeout = self._d.poll_interval
            except Exception:
                log.exception("delivery loop error")
                timeout = self._d.poll_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def _until_next_due(self) -> float:
        async with self._store.begin(readonly=True) as conn:
            nd = await repo.next_due_at(conn)
        if nd is None:
            return float(self._d.poll_interval)
        return max(0.005, min(float(self._d.poll_interval), nd - self._clock.now()))

    async def _claim(self) -> int:
        free = self._d.concurrency - len(self._inflight)
        if free <= 0:
            return 0
        now = self._clock.now()
        owner, lease = self.owner, self._d.lease
        claims = await self._store.run_in_transaction(lambda conn: repo.claim_due(conn, owner, now, lease, free))
        self._start(claims)
        return len(claims)

    def _start(self, claims: list[Claim]) -> None:
        # a claim's oldest first: turns to ask the rate limiter in (delivery/turns.py)
        for claim in sorted(claims, key=lambda c: c.delivery.created_at):
            turn = self._turns.next(claim.delivery.target)
            t = asyncio.create_task(self._deliver(claim, turn), name=f"deliver-{claim.delivery.id}")
            self._inflight.add(t)
            t.add_done_callback(self._done)

    def _done(self, t: asyncio.Task[None]) -> None:
        self._inflight.discard(t)
        self._wake.set()

    async def _update_gauges(self) -> None:
        async with self._store.begin(readonly=True) as conn:
            counts = await repo.count_pending_by_channel(conn)
            oldest = await repo.oldest_pending_created(conn)
        for ch in PLUGINS:
            self._metrics.outbox_pending.labels(ch).set(counts.get(ch, 0))
        self._metrics.outbox_oldest.set(max(0.0, self._clock.now() - oldest) if oldest else 0.0)

    async def _deliver(self, claim: Claim, turn: Turn) -> None:
        did = claim.delivery.id
        try:
            await self._deliver_row(claim, turn)
        except StoreUnavailable as exc:
            log.warning(
                "delivery %s: store unavailable (%s); it is retried when its lease runs out", claim.delivery.id, exc
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # a bug (a template that fails to render, say) must not hold the row until its lease runs out and then
            # loop forever: it is retried with back-off, then dead with the error, where the operator sees it
            log.exception("delivery %s failed unexpectedly", did)
            with contextlib.suppress(StoreUnavailable):
                await self._finish_retry(claim, RetryableError(f"unexpected {type(exc).__name__}: {exc}"[:500]), None)
        finally:
            turn.placed.set()  # whatever became of it, the next message to its target need not wait for it

    async def _deliver_row(self, claim: Claim, turn: Turn) -> None:
        d = claim.delivery
        failpoints.reached(f"worker.leased.{d.kind.value}")
        now = self._clock.now()
        did, target, channel_name = d.id, d.target, d.channel
        channel = self._channels.get(target)
        if channel is None:
            await self._finish_dead(claim, f"target {target} is no longer in the configuration", 0)
            return
        if d.kind is MessageKind.CHART:
            if self._charts is None:
                await self._finish_dead(claim, "charts are off in the configuration", 0)
            else:
                await self._charts.deliver(claim, channel, self.owner)
            return
        if claim.payload is None:
            await self._finish_dead(claim, "its notification is missing from the store or cannot be read", 0)
            return
        # decoding a large group's body takes a while: not on the event loop, which answers webhooks meanwhile
        message = await asyncio.to_thread(
            build_message, d, claim.change, claim.payload, self._send_resolved.get(d.receiver, True), claim.thread_ref
        )
        if self._decorate is not None and message.kind in (MessageKind.ALERT, MessageKind.EDIT):
            message = await self._decorate(d, self._group_of(claim), message, now)
        if self._charts is not None and self._charts.inline_wanted(d, message):
            message = dataclasses.replace(message, chart=await self._charts.inline(claim))
        if self._untold_and_over(claim, message):
            # quiet hours with skip_resolved: it fired and resolved while held, and nobody was ever told it fired
            self._metrics.suppressed(SuppressReason.QUIET_HOURS_RESOLVED)
            await self._finish_sent(claim, message, DeliveryReceipt(ref=None, parts=0))
            return
        rules = with_headroom(channel.rate_rules(), message)
        await turn.wait()
        now = self._clock.now()
        wait = await self._limiter.reserve(rules, now)
        if wait <= 0:
            turn.placed.set()
        else:
            self._metrics.deliveries.labels(channel_name, d.receiver, DeliveryOutcome.RATE_LIMITED.value).inc()
            owner, parts = self.owner, d.parts_sent
            # first come, first served: it tries again in its turn behind the older ones (delivery/turns.py)
            async with self._store.begin(readonly=True) as conn:  # a read: not through SQLite's one writer
                ahead = await slots.waiting_ahead(conn, target, d.created_at, now)
            again = max(wait, await self._limiter.turn(rules, now, ahead)) if ahead else wait
            held = self._line(
                claim, now, "rate_limited", f"held back by {target}'s rate limit; next try in {format_duration(again)}"
            )

            def hold(conn: Connection) -> None:
                repo.mark_retry(conn, did, owner, now, now + again, None, parts, count_attempt=False)
                record(conn, held)

            await self._store.run_in_transaction(hold)
            turn.placed.set()
            threshold = self._settings.storm.threshold
            folded = await self._store.run_in_transaction(
                lambda conn: collapse_storm(conn, target, now, threshold, timeline=self._record)
            )
            if folded:
                failpoints.reached("storm.folded")
                log.warning("alert storm on %s: %d groups folded into one summary message", target, folded)
                self._metrics.storm_groups.inc(folded)
                self.wake()
            return
        if not await keep_for_the_send(self._store, claim, self.owner, self._clock.now(), self._d):
            return
        started = asyncio.get_running_loop().time()
        try:
            receipt = await asyncio.wait_for(
                channel.edit(message) if message.kind is MessageKind.EDIT else self._send(channel, message),
                timeout=self._d.send_timeout,
            )
        except RetryableError as exc:
            await self._finish_retry(claim, exc, exc.retry_after)
            return
        except PermanentError as exc:
            await self._finish_dead(claim, str(exc), exc.parts_done if exc.parts_done is not None else d.parts_sent)
            return
        except TimeoutError:
            await self._finish_retry(claim, RetryableError(f"no answer within {self._d.send_timeout:g}s"), None)
            return
        finally:
            self._metrics.delivery_duration.labels(channel_name).observe(asyncio.get_running_loop().time() - started)
        failpoints.reached(f"worker.sent.{d.kind.value}")  # the provider has it; the store does not know yet
        # the slot booked above covered one message; a split message sent more, and the provider counts each
        await self._limiter.book(rules, self._clock.now(), receipt.parts - message.part - 1)
        await self._finish_sent(claim, message, receipt)

    @staticmethod
    def _group_of(claim: Claim) -> str:
        """The alert group a message is about: its own, or for an EDIT the group whose message it edits."""
        d = claim.delivery
        return (claim.change.edit_group if d.kind in (MessageKind.EDIT, MessageKind.CHART) else None) or d.group_hash

    def _line(self, claim: Claim, now: float, outcome: str, text: str) -> list[TimelineEvent]:
        """The attempt's line of its group's timeline (none when the timeline is off)."""
        return [attempt_line(claim, self._group_of(claim), now, outcome, text)] if self._record else []

    async def _send(self, channel: Channel, message: Message) -> DeliveryReceipt:
        """Send; if the provider refuses the rendered message for its content, send the minimal safe form once
        (no message is lost for what it says). If that is refused too, the message goes dead: counted, as a bug."""
        try:
            return await channel.send(message)
        except ContentRejected as exc:
            log.warning(
                "delivery %s to %s: %s; sending the minimal form instead", message.delivery_id, message.target, exc
            )
            first = exc
        minimal = dataclasses.replace(message, minimal=True, part=0)
        try:
            receipt = await channel.send(minimal)
        except ContentRejected as exc:
            self._metrics.content_rejected.labels(channel.name, "dead").inc()
            raise ContentRejected(f"{first}; the minimal form too: {exc}", parts_done=first.parts_done) from None
        self._metrics.content_rejected.labels(channel.name, "fallback_sent").inc()
        parts_before = message.part if first.parts_done is None else first.parts_done
        return DeliveryReceipt(ref=receipt.ref, parts=parts_before + receipt.parts)

    @staticmethod
    def _untold_and_over(claim: Claim, message: Message) -> bool:
        if message.kind is not MessageKind.ALERT:
            return False
        change = claim.change
        if not change.skip_if_resolved or message.group.firing:
            return False
        return not any(status == AlertStatus.FIRING.value for status in (change.base or {}).values())

    async def _finish_sent(self, claim: Claim, message: Message, receipt: DeliveryReceipt) -> None:
        d = claim.delivery
        now = self._clock.now()
        owner = self.owner
        over = (
            message.kind is MessageKind.ALERT
            and message.group.status is AlertStatus.RESOLVED
            and not message.group.firing
        )
        first = receipt.ref is not None and message.thread_ref is None and message.kind is MessageKind.ALERT

        if message.kind is MessageKind.EDIT:
            text = f"edited the message on {d.target} to show the group's acknowledgement and silence"
        elif receipt.parts == 0:
            text = "not sent: it fired and resolved while quiet hours held it, and nobody had been told it fired"
        else:
            parts = f" in {receipt.parts} parts" if receipt.parts > 1 else ""
            ref = f" (provider's reference {receipt.ref})" if receipt.ref else ""
            text = f"sent to {d.target}{parts}{ref}"
        lines = self._line(claim, now, "sent" if receipt.parts or message.kind is MessageKind.EDIT else "skipped", text)

        def write(conn: Connection) -> None:
            repo.mark_sent(conn, d.id, owner, now, receipt.ref, receipt.parts)
            record(conn, lines)
            if over:  # the incident is over: its next firing starts a new thread
                repo.clear_thread(conn, d.target, d.group_hash)
            elif first and receipt.ref is not None:
                repo.set_thread(conn, d.target, d.group_hash, receipt.ref, now)
            if self._charts is not None:
                self._charts.follow(conn, claim, message, receipt, now)

        await self._store.run_in_transaction(write)
        self._metrics.deliveries.labels(d.channel, d.receiver, DeliveryOutcome.SENT.value).inc()
        log.info("delivered %s to %s (%s)", d.id, d.target, message.group.status.value)

    async def _finish_retry(self, claim: Claim, exc: DeliveryError, retry_after: float | None) -> None:
        d = claim.delivery
        now = self._clock.now()
        attempts = d.attempts + 1
        parts = int(exc.parts_done if exc.parts_done is not None else d.parts_sent)
        too_old = now - d.created_at >= self._d.max_age
        if attempts >= self._d.max_attempts or too_old:
            why = "max_age" if too_old else "max_attempts"
            await self._finish_dead(claim, f"{exc} (gave up after {attempts} attempts: {why})", parts)
            return
        delay = retry_delay(attempts, self._d, retry_after)
        owner, error = self.owner, redact(str(exc))
        lines = self._line(
            claim,
            now,
            "retry",
            f"attempt {attempts} to {d.target} failed: {error}; next try in {format_duration(delay)}",
        )

        def write(conn: Connection) -> None:
            repo.mark_retry(conn, d.id, owner, now, now + delay, error, parts)
            record(conn, lines)

        await self._store.run_in_transaction(write)
        self._metrics.deliveries.labels(d.channel, d.receiver, DeliveryOutcome.RETRY.value).inc()
        log.warning("delivery %s to %s failed (attempt %d), retry in %.1fs: %s", d.id, d.target, attempts, delay, exc)

    async def _finish_dead(self, claim: Claim, error: str, parts: int) -> None:
        d = claim.delivery
        now = self._clock.now()
        error = redact(error)
        owner = self.owner
        lines = self._line(claim, now, "dead", f"dead letter on {d.target}: {error}")

        def write(conn: Connection) -> None:
            repo.mark_dead(conn, d.id, owner, now, error, parts)
            record(conn, lines)

        await self._store.run_in_transaction(write)
        self._metrics.deliveries.labels(d.channel, d.receiver, DeliveryOutcome.DEAD.value).inc()
        log.error(
            "delivery %s to %s is dead: %s (retry it with POST /api/v1/deliveries/%s/retry)",
            d.id,
            d.target,
            error,
            d.id,
        )
