"""The running notifier's parts, built once from the settings; the app's handlers and the CLI reach them here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from prometheus_client import CollectorRegistry

from notifier import failpoints
from notifier.actions.receipts import AcknowledgingChannel, PhoneAcknowledgements
from notifier.actions.service import ActionService
from notifier.actions.shown import ShownActions
from notifier.actions.slack import SlackRequests
from notifier.actions.telegram import TelegramUpdatesListener
from notifier.channels import Channel
from notifier.channels.pushover import RECEIPT_PREFIX
from notifier.channels.registry import PLUGINS, renderer_for
from notifier.charts import Charter
from notifier.clock import Clock, SystemClock
from notifier.delivery.charts import ChartFollowUps
from notifier.delivery.ratelimit import MemoryRateLimiter, RateLimiter, StoreRateLimiter
from notifier.delivery.worker import DeliveryWorker
from notifier.digests import DigestScheduler
from notifier.domain import Severity
from notifier.escalation import Escalator
from notifier.heartbeat import Heartbeat
from notifier.metrics import NotifierMetrics
from notifier.pipeline.intake import IntakeStage
from notifier.pipeline.jobs import IntakeJob, IntakeResult
from notifier.redaction import protect
from notifier.routing import Router
from notifier.schedules import Schedule
from notifier.settings import ReceiverSettings, RouteSettings, Settings
from notifier.silences import SilenceClient
from notifier.store import Batch, Store
from notifier.store.housekeeping import Housekeeper
from notifier.store.intake import IntakeQueries
from notifier.store.redelivery import redelivery_keys
from notifier.templates import Renderer
from notifier.watchdog import Watchdog

log = logging.getLogger("notifier")
ChannelFactory = Callable[[ReceiverSettings, str, str, object, Renderer, Clock], Channel]


def build_channel(
    receiver: ReceiverSettings, key: str, kind: str, target: object, renderer: Renderer, clock: Clock
) -> Channel:
    """The real channel for one target."""
    return PLUGINS[kind].build(key, target, renderer, clock)


def _has_steps(route: RouteSettings) -> bool:
    return bool(route.escalation) or any(_has_steps(r) for r in route.routes)


@dataclass
class ChatActions:
    """Acting from the chat: the service, one listener per Telegram bot, Slack's request handling."""

    service: ActionService
    silences: SilenceClient
    telegram: list[TelegramUpdatesListener]
    slack: SlackRequests | None

    @classmethod
    def build(
        cls, settings: Settings, store: Store, clock: Clock, metrics: NotifierMetrics, worker: DeliveryWorker
    ) -> ChatActions:
        assert settings.actions is not None and settings.alertmanager is not None
        silences = SilenceClient(settings.alertmanager)
        service = ActionService(settings, store, silences, clock, metrics, worker.wake)
        bots: dict[str, str] = {}  # token -> API URL: one listener per bot, however many chats it posts to
        for r in settings.receivers:
            for t in r.channels.get("telegram", []):
                bots.setdefault(str(t.bot_token), t.api_url)
        telegram = [
            TelegramUpdatesListener(token, url, settings.actions.telegram, service, store, clock, worker.owner)
            for token, url in bots.items()
        ]
        slack_settings = settings.actions.slack
        slack = (
            SlackRequests(str(slack_settings.signing_secret), service, store, clock, slack_settings.response_urls)
            if slack_settings is not None
            else None
        )
        return cls(service, silences, telegram, slack)

    async def start(self) -> None:
        for listener in self.telegram:
            await listener.start()

    async def stop(self) -> None:
        for listener in self.telegram:
            await listener.stop()
        if self.slack is not None:
            await self.slack.stop()
        await self.service.stop()
        await self.silences.aclose()


@dataclass
class Runtime:
    """Everything one notifier process runs on."""

    settings: Settings
    store: Store
    clock: Clock
    metrics: NotifierMetrics
    router: Router
    intake: IntakeStage
    intake_batch: Batch[IntakeJob, IntakeResult]
    worker: DeliveryWorker
    channels: dict[str, Channel]
    registry: CollectorRegistry
    digests: DigestScheduler
    housekeeper: Housekeeper
    heartbeat: Heartbeat
    chat: ChatActions | None = None  # with `actions:` on
    escalator: Escalator | None = None  # with escalation steps on a route
    phone_acks: PhoneAcknowledgements | None = None  # with targets that take acknowledgements (Pushover)
    watchdog: Watchdog | None = None  # with `watchdog:` on
    charter: Charter | None = None  # with `charts:` on

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        channel_factory: ChannelFactory | None = None,
        limiter: RateLimiter | None = None,
        store: Store | None = None,
        worker_owner: str | None = None,
    ) -> Runtime:
        protect(settings)  # before anything could log or store one of its secrets
        clock = clock or SystemClock()
        registry = registry or CollectorRegistry()
        store = store or Store(settings.storage)
        targets = [(r.name, kind) for r in settings.receivers for _k, kind, _t in r.targets()]
        metrics = NotifierMetrics(registry, targets, channels=list(PLUGINS))
        router = Router(settings.routes)
        renderers = {r.name: renderer_for(r) for r in settings.receivers}
        factory = channel_factory or build_channel
        channels: dict[str, Channel] = {}
        for r in settings.receivers:
            for key, kind, target in r.targets():
                channels[key] = factory(r, key, kind, target, renderers[r.name], clock)
        if limiter is None:  # one process on SQLite; on PostgreSQL the limits are shared by every replica
            limiter = MemoryRateLimiter() if store.single_process else StoreRateLimiter(store)
        decorate = ShownActions(settings, store) if settings.actions is not None else None
        charter = Charter(settings.charts) if settings.charts is not None else None
        charts = None
        if charter is not None:
            capabilities = {name: p.capabilities for name, p in PLUGINS.items()}
            charts = ChartFollowUps(settings, charter, store, clock, metrics, limiter, capabilities.__getitem__)
        worker = DeliveryWorker(
            store, settings, channels, clock, metrics, limiter, owner=worker_owner, decorate=decorate, charts=charts
        )
        intake = IntakeStage(
            settings,
            router,
            clock,
            metrics,
            IntakeQueries(store.dialect),
            redelivery_keys(store.dialect, settings.dedup.redelivery_window),
            lease_to=worker.lease_offer,
            silent={
                key: frozenset(s for s in Severity if PLUGINS[kind].silent(target, s))
                for r in settings.receivers
                for key, kind, target in r.targets()
            },
        )

        def committed(results: list[IntakeResult | Exception]) -> None:
            failpoints.reached("intake.committed")  # stored, not yet answered nor handed to the worker
            intake.committed(results)  # first: the next transaction's redeliveries must see these keys
            leased = [claim for r in results if isinstance(r, IntakeResult) for claim in r.leased]
            if leased:
                worker.accept(leased)
            if any(isinstance(r, IntakeResult) and r.queued > len(r.leased) for r in results):
                worker.wake()

        intake_batch: Batch[IntakeJob, IntakeResult] = Batch(intake.commit_batch, on_commit=committed)
        digest_targets = {
            r.name: [(key, kind) for key, kind, _t in r.targets() if PLUGINS[kind].capabilities.digests]
            for r in settings.receivers
        }
        digests = DigestScheduler(store, settings, clock, metrics, worker.wake, digest_targets)
        housekeeper = Housekeeper(store, settings.storage.retention, clock, metrics)
        heartbeat = Heartbeat(settings.heartbeat, store, lambda: worker.running, clock, metrics)
        chat = ChatActions.build(settings, store, clock, metrics, worker) if settings.actions is not None else None
        by_receiver = {r.name: [(key, kind) for key, kind, _t in r.targets()] for r in settings.receivers}
        zone = settings.actions.timezone if settings.actions is not None else "UTC"
        escalator = None
        if _has_steps(settings.routes):
            escalator = Escalator(
                store,
                clock,
                metrics,
                by_receiver,
                {r.name: r.send_resolved for r in settings.receivers},
                {name: Schedule.from_settings(q) for name, q in settings.quiet_hours.items()},
                timeline=settings.storage.timeline,
                zone=zone,
                wake=worker.wake,
            )
        acknowledging = {
            key: cast(AcknowledgingChannel, channels[key])
            for r in settings.receivers
            for key, kind, _t in r.targets()
            if PLUGINS[kind].capabilities.acknowledges and hasattr(channels[key], "acknowledgement")
        }
        phone_acks = None
        if acknowledging:
            editable = [key for r in settings.receivers for key, kind, t in r.targets() if PLUGINS[kind].buttons(t)]
            phone_acks = PhoneAcknowledgements(
                store,
                clock,
                metrics,
                acknowledging,
                RECEIPT_PREFIX,
                editable,
                timeline=settings.storage.timeline,
                wake=worker.wake,
            )
        watchdog = None
        if settings.watchdog is not None:
            watchdog = Watchdog(settings.watchdog, store, clock, metrics, by_receiver, zone=zone, wake=worker.wake)
        return cls(
            settings,
            store,
            clock,
            metrics,
            router,
            intake,
            intake_batch,
            worker,
            channels,
            registry,
            digests,
            housekeeper,
            heartbeat,
            chat,
            escalator,
            phone_acks,
            watchdog,
            charter,
        )

    @property
    def telegram_webhook(self) -> TelegramUpdatesListener | None:
        """The bot whose updates come by webhook, if they do."""
        if self.chat is None or self.settings.actions is None or self.settings.actions.telegram.mode != "webhook":
            return None
        return self.chat.telegram[0] if self.chat.telegram else None

    @property
    def slack_requests(self) -> SlackRequests | None:
        return self.chat.slack if self.chat is not None else None

    async def start(self, *, worker: bool = True) -> None:
        await self.store.migrate()
        if worker and self.charter is not None:
            self.charter.start()
        if worker:
            await self.worker.start()
            self.digests.start()
            self.housekeeper.start()
            self.heartbeat.start()
            if self.chat is not None:
                await self.chat.start()
            for ticker in (self.escalator, self.phone_acks, self.watchdog):
                if ticker is not None:
                    ticker.start()

    async def stop(self) -> None:
        for ticker in (self.watchdog, self.phone_acks, self.escalator):
            if ticker is not None:
                await ticker.stop()
        if self.chat is not None:
            await self.chat.stop()
        await self.heartbeat.stop()
        await self.housekeeper.stop()
        await self.digests.stop()
        await self.store.drain_writes()  # webhooks already accepted are committed before the worker stops
        await self.worker.stop()
        for ch in self.channels.values():
            try:
                await ch.aclose()
            except Exception:
                log.debug("closing a channel failed", exc_info=True)
        if self.charter is not None:
            await self.charter.aclose()
        await self.store.dispose()
