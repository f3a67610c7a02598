"""Charts in the outbox (notifier/charts draws them).

Once a firing group's message has gone to a target whose receiver asks for charts (`message.chart`) and whose
channel can send pictures, a CHART message follows it, in reply to it. It waits in an outbox slot of its own (its
group hash is derived from the group's), so it never takes the place of the group's next message: the text never
waits for a chart. When it is due, the chart is drawn (or taken from the cache) and sent. A chart that cannot be
drawn, or that the provider refuses for good or after every retry, is skipped, never a dead letter: the group's
timeline says why and `notifier_charts_total{outcome}` counts it. A provider's passing failure is retried like any
message.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import cast

import msgspec
from sqlalchemy.engine import Connection

from notifier.alertmanager import correct_alerts
from notifier.channels import Capabilities, Channel, ImageChannel
from notifier.charts import Chart, Charter, headline
from notifier.charts.drawing import format_span
from notifier.clock import Clock
from notifier.delivery.ratelimit import RateLimiter
from notifier.delivery.retry import retry_delay
from notifier.domain import (
    AlertGroup,
    AlertStatus,
    ChangeRecord,
    Claim,
    Delivery,
    DeliveryReceipt,
    Message,
    MessageKind,
    TimelineEvent,
)
from notifier.errors import PermanentError, RetryableError
from notifier.metrics import NotifierMetrics
from notifier.redaction import redact
from notifier.settings import Settings
from notifier.store import Store, new_id
from notifier.store import repository as repo
from notifier.store.timeline import attempt_line, record


def chart_slot(group_hash: str) -> str:
    """The outbox slot of a group's charts on a target: its own, beside the group's messages."""
    return hashlib.sha256(f"chart\x00{group_hash}".encode()).hexdigest()


class ChartFollowUps:
    """Queues a chart after a group's message (`follow`, in the transaction that records the send) and delivers it
    when it is due (`deliver`)."""

    def __init__(
        self,
        settings: Settings,
        charter: Charter,
        store: Store,
        clock: Clock,
        metrics: NotifierMetrics,
        limiter: RateLimiter,
        capabilities: Callable[[str], Capabilities],
    ) -> None:
        """`capabilities`: what a channel (by name) can do; charts go to those that take pictures."""
        self._charter = charter
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._limiter = limiter
        self._d = settings.delivery
        self._record = settings.storage.timeline
        self._wanted = {r.name: r.message for r in settings.receivers if r.message.chart}
        self._capabilities = capabilities
        self._span = format_span(float(settings.charts.range)) if settings.charts is not None else ""

    def follow(self, conn: Connection, claim: Claim, message: Message, receipt: DeliveryReceipt, now: float) -> None:
        d = claim.delivery
        if (
            message.kind is not MessageKind.ALERT
            or not message.group.firing
            or receipt.ref is None
            or d.receiver not in self._wanted
            or not self._capabilities(d.channel).images
        ):
            return
        chart = Delivery.new(
            id=new_id(),
            notification_id=d.notification_id,
            receiver=d.receiver,
            target=d.target,
            channel=d.channel,
            group_key=d.group_key,
            group_hash=chart_slot(d.group_hash),
            change=ChangeRecord(edit_ref=receipt.ref, edit_group=d.group_hash, stale=claim.change.stale),
            now=now,
            kind=MessageKind.CHART,
            silent=True,
        )
        repo.queue_newest(conn, [chart])  # a chart of an older state that still waits becomes this one

    async def deliver(self, claim: Claim, channel: Channel, owner: str) -> None:
        d, change = claim.delivery, claim.change
        settings = self._wanted.get(d.receiver)
        if settings is None or claim.payload is None:
            await self._skip(claim, owner, "given_up", "charts are no longer asked for, or the group is gone")
            return
        drawn = await self._draw(claim, change.edit_group or d.group_hash)
        if drawn is None:
            await self._skip(claim, owner, "resolved", "the group resolved before its chart was drawn")
            return
        title, chart = drawn
        now = self._clock.now()
        if chart.png is None:
            await self._skip(claim, owner, chart.outcome.value, f"no chart: {chart.reason}")
            return
        self._metrics.charts.labels(chart.outcome.value).inc()
        wait = await self._limiter.reserve(channel.rate_rules(), now)
        if wait > 0:
            await self._again(claim, owner, now + wait, None, count=False)
            return
        message = Message(
            delivery_id=d.id,
            receiver=d.receiver,
            target=d.target,
            group=_empty(d.group_key),
            kind=MessageKind.CHART,
            silent=True,
            edit_ref=change.edit_ref,
        )
        caption = f"{title} · last {self._span}" + (f" · {chart.reason}" if chart.reason else "")
        try:
            receipt = await asyncio.wait_for(
                cast(ImageChannel, channel).send_image(message, chart.png, caption), timeout=self._d.send_timeout
            )
        except RetryableError as exc:
            await self._again(claim, owner, None, exc.retry_after, error=str(exc))
            return
        except PermanentError as exc:
            await self._skip(claim, owner, "refused", f"the chart was refused: {exc}")
            return
        except TimeoutError:
            await self._again(claim, owner, None, None, error=f"no answer within {self._d.send_timeout:g}s")
            return
        await self._write(claim, owner, receipt.ref, 1, "sent", f"chart sent to {d.target} ({chart.outcome.value})")

    def inline_wanted(self, d: Delivery, message: Message) -> bool:
        """Whether a message goes with its chart inside it (email): a firing group's, to a receiver that asks."""
        return (
            message.kind is MessageKind.ALERT
            and bool(message.group.firing)
            and d.receiver in self._wanted
            and self._capabilities(d.channel).inline_images
        )

    async def inline(self, claim: Claim) -> bytes | None:
        """The chart to show inside the message, drawn within `charts.timeout`; None (and why, in the timeline)
        when there is none: the message goes without it."""
        drawn = await self._draw(claim, claim.delivery.group_hash)
        if drawn is None:
            return None
        _title, chart = drawn
        self._metrics.charts.labels(chart.outcome.value).inc()
        if chart.png is None:
            lines = self._line(claim, self._clock.now(), "chart", f"no chart in the message: {chart.reason}")
            if lines:
                await self._store.run_in_transaction(lambda conn: record(conn, lines))
        return chart.png

    async def _draw(self, claim: Claim, group_hash: str) -> tuple[str, Chart] | None:
        """The chart of the claim's group (its title, and the chart or why there is none); None when nothing of the
        group fires any more."""
        settings = self._wanted[claim.delivery.receiver]
        assert claim.payload is not None
        body = msgspec.json.decode(claim.payload)
        alerts = correct_alerts(body.get("alerts", []), claim.change.stale)
        if not any(a.get("status") == "firing" for a in alerts):
            return None
        title, severity = headline(body)
        hidden = frozenset(settings.hide_labels)
        now = self._clock.now()
        return title, await self._charter.draw(group_hash, alerts, title, severity, settings.timezone, now, hidden)

    async def _again(
        self,
        claim: Claim,
        owner: str,
        at: float | None,
        retry_after: float | None,
        error: str | None = None,
        *,
        count: bool = True,
    ) -> None:
        d = claim.delivery
        now = self._clock.now()
        attempts = d.attempts + (1 if count else 0)
        if count and attempts >= self._d.max_attempts:
            await self._skip(claim, owner, "given_up", f"the chart was not sent after {attempts} attempts: {error}")
            return
        next_at = at if at is not None else now + retry_delay(attempts, self._d, retry_after)
        # a chart held by the rate limit is not a line of the group's story; a failure is
        lines = (
            self._line(claim, now, "retry", f"chart to {d.target} failed: {redact(error)}; tried again")
            if error
            else []
        )

        def write(conn: Connection) -> None:
            repo.mark_retry(conn, d.id, owner, now, next_at, redact(error) if error else None, 0, count_attempt=count)
            record(conn, lines)

        await self._store.run_in_transaction(write)

    async def _skip(self, claim: Claim, owner: str, outcome: str, why: str) -> None:
        self._metrics.charts.labels(outcome).inc()
        await self._write(claim, owner, None, 0, "skipped", why)

    async def _write(self, claim: Claim, owner: str, ref: str | None, parts: int, outcome: str, text: str) -> None:
        now = self._clock.now()
        lines = self._line(claim, now, outcome, text)

        def write(conn: Connection) -> None:
            repo.mark_sent(conn, claim.delivery.id, owner, now, ref, parts)
            record(conn, lines)

        await self._store.run_in_transaction(write)

    def _line(self, claim: Claim, now: float, outcome: str, text: str) -> list[TimelineEvent]:
        """The attempt's line of its group's timeline (none when the timeline is off)."""
        return (
            [attempt_line(claim, claim.change.edit_group or claim.delivery.group_hash, now, outcome, redact(text))]
            if self._record
            else []
        )


def _empty(group_key: str) -> AlertGroup:
    """A chart's message carries no alerts of its own: the picture and its caption say it all."""
    return AlertGroup(
        receiver="chart",
        status=AlertStatus.FIRING,
        group_key=group_key,
        group_labels={},
        common_labels={},
        common_annotations={},
        external_url="",
        alerts=(),
    )
