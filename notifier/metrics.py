"""notifier_* metrics. One NotifierMetrics per app, on a registry it is handed; label children are created at start
so that every series exists (as 0) from the first scrape."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from notifier.domain import AlertStatus, DeliveryOutcome, Severity, SuppressReason, WebhookOutcome

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_DELIVERY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series double every counter for no use in alerting


class NotifierMetrics:
    """Every metric the notifier exports."""

    def __init__(
        self,
        registry: CollectorRegistry,
        receivers: list[tuple[str, str]] | None = None,
        channels: Iterable[str] = (),
    ) -> None:
        """`receivers`: (receiver, channel) of every target, and `channels` every channel the notifier has: their
        series exist from the first scrape."""
        self.registry = registry
        self.chat_actions = Counter(
            "notifier_chat_actions_total",
            "Presses and commands from the chat, by channel, action and outcome.",
            ["channel", "action", "outcome"],
            registry=registry,
        )
        self.webhooks = Counter(
            "notifier_webhooks_received_total", "Webhook requests by outcome.", ["outcome"], registry=registry
        )
        self.alerts = Counter(
            "notifier_alerts_received_total",
            "Alerts in accepted webhooks (duplicates excluded).",
            ["severity", "status"],
            registry=registry,
        )
        self.intake_latency = Histogram(
            "notifier_intake_duration_seconds",
            "Time from a webhook's arrival to its answer, storage included.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.deliveries = Counter(
            "notifier_deliveries_total",
            "Delivery attempts by channel, receiver and outcome.",
            ["channel", "receiver", "outcome"],
            registry=registry,
        )
        self.delivery_duration = Histogram(
            "notifier_delivery_duration_seconds",
            "Time a channel took to deliver one message.",
            ["channel"],
            buckets=_DELIVERY_BUCKETS,
            registry=registry,
        )
        self.outbox_pending = Gauge(
            "notifier_outbox_pending", "Messages waiting in the outbox.", ["channel"], registry=registry
        )
        self.outbox_oldest = Gauge(
            "notifier_outbox_oldest_pending_seconds", "Age of the oldest waiting message.", registry=registry
        )
        self.suppressed_total = Counter(
            "notifier_notifications_suppressed_total",
            "Notifications not sent, by reason.",
            ["reason"],
            registry=registry,
        )
        self.deferred_total = Counter(
            "notifier_notifications_deferred_total", "Messages held until quiet hours end.", registry=registry
        )
        self.digest_items = Gauge("notifier_digest_items", "Items in the last digest.", registry=registry)
        self.digests_sent = Counter("notifier_digests_sent_total", "Digests queued for sending.", registry=registry)
        self.heartbeats = Counter(
            "notifier_heartbeats_total",
            "Dead-man's-switch calls by outcome: sent, withheld (the notifier was not healthy) or failed.",
            ["outcome"],
            registry=registry,
        )
        self.pruned = Counter(
            "notifier_store_pruned_rows_total",
            "Rows deleted by housekeeping once older than storage.retention, by table.",
            ["table"],
            registry=registry,
        )
        self.charts = Counter(
            "notifier_charts_total",
            "Charts by outcome: drawn, cached, no_expression, no_data, failed (Prometheus), timeout, refused (by the "
            "provider, for good), given_up (after every retry), resolved (the group resolved before its chart).",
            ["outcome"],
            registry=registry,
        )
        self.storm_groups = Counter(
            "notifier_storm_groups_total",
            "Alert groups delivered inside a storm summary instead of one by one.",
            registry=registry,
        )
        self.content_rejected = Counter(
            "notifier_content_rejected_total",
            "Messages a provider refused for their content, by what followed: the minimal safe form was sent "
            "(fallback_sent) or refused too (dead). Any of these is a rendering bug worth reporting.",
            ["channel", "outcome"],
            registry=registry,
        )
        self.stale_alerts = Counter(
            "notifier_stale_alerts_total",
            "Alert states that came older than one already known (an Alertmanager peer's late copy) and were "
            "ignored for the group's state.",
            registry=registry,
        )
        self.worker_up = Gauge("notifier_worker_running", "1 while the delivery worker runs.", registry=registry)
        self.escalations = Counter(
            "notifier_escalations_total",
            "Escalation chains by what happened: started (the route's receivers were sent the group), escalated (a "
            "step paged its receivers), acknowledged or silenced (the chain ended), resolved.",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("started", "escalated", "acknowledged", "silenced", "resolved"):
            self.escalations.labels(outcome)
        self.watchdog_missing = Gauge(
            "notifier_watchdog_missing",
            "1 while no Watchdog came from this source for longer than watchdog.expect_every.",
            ["source"],
            registry=registry,
        )

        # children looked up once: labels() takes a lock and builds a key, on every webhook
        self._webhooks_by = {o: self.webhooks.labels(o.value) for o in WebhookOutcome}
        self._alerts_by = {
            (sev.value, st.value): self.alerts.labels(sev.value, st.value) for sev in Severity for st in AlertStatus
        }
        for r in SuppressReason:
            self.suppressed_total.labels(r.value)
        for ch in channels:
            self.outbox_pending.labels(ch)
            self.delivery_duration.labels(ch)
            for outcome in ("fallback_sent", "dead"):
                self.content_rejected.labels(ch, outcome)
        for receiver, channel in receivers or []:
            for out in DeliveryOutcome:
                self.deliveries.labels(channel, receiver, out.value)

    def webhook(self, outcome: WebhookOutcome, seconds: float) -> None:
        self._webhooks_by[outcome].inc()
        self.intake_latency.observe(seconds)

    def alerts_received(self, counts: dict[tuple[Severity, str], int]) -> None:
        """Accepted alerts by (severity, status): both validated, so every pair has its child."""
        for key, n in counts.items():
            self._alerts_by[key].inc(n)

    def suppressed(self, reason: SuppressReason) -> None:
        self.suppressed_total.labels(reason.value).inc()

    def deferred(self) -> None:
        self.deferred_total.inc()
