"""The exporter's HTTP side: /metrics (the contract from the latest snapshot and events, plus the exporter's own
health) and /healthz. A scrape that finds the database unreadable serves source_up 0 and no bot series: stale
numbers are never served as if fresh."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter.catalogue import BY_NAME, CONTRACT
from exporter.sources import DatabaseSource, EventState, PeakStore, Snapshot


def _family(name: str, labels: tuple[str, ...] | None = None) -> Any:
    spec = BY_NAME[name]
    cls = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily, "histogram": HistogramMetricFamily}[spec.kind]
    return cls(spec.name, spec.help, labels=list(labels or spec.labels))


@dataclass(frozen=True, slots=True)
class Valuation:
    """A bot's value at one scrape, and its drawdown from the kept peak."""

    value: float
    profit: float
    drawdown: float


class ContractCollector(Collector):
    """Builds every metric of the contract from a snapshot. `refresh` computes what depends on state (values,
    peaks) before a scrape is exposed; `collect`, called by generate_latest, only reads."""

    def __init__(self, events: EventState, peaks: PeakStore) -> None:
        self.events = events
        self.peaks = peaks
        self.snapshot: Snapshot | None = None
        self.valuations: dict[str, Valuation] = {}
        self.source_up: dict[str, float] = {"database": 0.0, "redis": 0.0}
        self.scrape_duration = 0.0

    def describe(self) -> Iterable[Metric]:
        return []

    def refresh(self, snap: Snapshot | None) -> None:
        self.snapshot = snap
        if snap is None:
            return
        valuations: dict[str, Valuation] = {}
        for b in snap.bots:
            t = b.trades
            price = self.events.last_price.get(b.name)
            if price is not None and t.base != 0:
                # realised profit is already in the cost basis (sells return quote), so value is what was
                # invested plus what the position is worth minus what it cost
                profit = float(t.base) * price - float(t.cost)
            else:
                profit = b.profit if b.profit else float(t.realised)
            value = b.invested + profit
            # a portfolio's peak is at least what was put in: a bot already under water at the first scrape shows
            # its drawdown from there
            peak = self.peaks.update(b.name, max(value, b.invested))
            drawdown = (peak - value) / peak * 100 if peak > 0 else 0.0
            valuations[b.name] = Valuation(value, profit, max(0.0, drawdown))
        self.peaks.forget_except(set(valuations))
        self.valuations = valuations

    def collect(self) -> Iterator[Metric]:
        fams = {spec.name: _family(spec.name) for spec in CONTRACT}
        now = time.time()
        snap = self.snapshot
        if snap is not None:
            for b in snap.bots:
                lv = [b.name, b.symbol, b.strategy]
                t = b.trades
                price = self.events.last_price.get(b.name)
                v = self.valuations.get(b.name)
                if v is None:
                    continue
                value, profit, drawdown = v.value, v.profit, v.drawdown
                closed = t.won + t.lost
                fams["bot_portfolio_value_usdt"].add_metric(lv, value)
                fams["bot_portfolio_return_percent"].add_metric(lv, profit / b.invested * 100 if b.invested else 0.0)
                fams["bot_portfolio_drawdown_percent"].add_metric(lv, drawdown)
                fams["bot_total_trades"].add_metric(lv, t.count)
                fams["bot_winning_trades"].add_metric(lv, t.won)
                fams["bot_losing_trades"].add_metric(lv, t.lost)
                fams["bot_win_rate_percent"].add_metric(lv, t.won / closed * 100 if closed else 0.0)
                fams["bot_open_orders"].add_metric(lv, b.open_orders)
                fams["bot_total_orders"].add_metric(lv, b.orders)
                fams["bot_failed_orders"].add_metric(lv, b.failed)
                fams["bot_canceled_orders"].add_metric(lv, b.canceled)
                fams["bot_grid_levels_active"].add_metric(lv, b.grid_active)
                fams["bot_dca_steps_active"].add_metric(lv, b.dca_steps)
                fams["bot_position_size_base"].add_metric(lv, float(t.base))
                quote = float(t.base) * price if price is not None else float(t.cost)
                fams["bot_position_size_quote"].add_metric(lv, quote)
                running = b.status == "running" and b.started_at is not None
                fams["bot_uptime_seconds"].add_metric(
                    lv, max(0.0, now - b.started_at) if running and b.started_at else 0.0
                )
                fams["bot_errors"].add_metric(lv, b.errors)
                if t.last_at is not None:
                    fams["bot_last_trade_timestamp"].add_metric(lv, t.last_at)
            ev = self.events
            for (bot, endpoint), n in ev.api_requests.items():
                fams["bot_api_requests"].add_metric([bot, endpoint], n)
            # every endpoint called has its error counter, at 0 until a call fails, so that rate() sees it start
            for key in ev.api_requests.keys() | ev.api_errors.keys():
                fams["bot_api_errors"].add_metric(list(key), ev.api_errors.get(key, 0))
            for (bot, endpoint), hist in ev.api_latency.items():
                fams["bot_api_request_duration_seconds"].add_metric([bot, endpoint], hist.cumulative(), hist.total)
            for bot, remaining in ev.rate_limit.items():
                fams["bot_api_rate_limit_remaining"].add_metric([bot], remaining)
        yield from fams.values()
        up = GaugeMetricFamily("bot_exporter_source_up", "1 when the source could be read.", labels=["source"])
        for source, is_up in self.source_up.items():
            up.add_metric([source], is_up)
        yield up
        if snap is not None:
            yield GaugeMetricFamily(
                "bot_exporter_last_success_timestamp_seconds", "When the database was last read.", value=snap.taken_at
            )
        events = CounterMetricFamily("bot_exporter_events", "Events received by type.", labels=["event_type"])
        for etype, n in self.events.by_type.items():
            events.add_metric([etype], n)
        yield events
        yield CounterMetricFamily(
            "bot_exporter_events_malformed", "Events that were not valid JSON events.", value=self.events.malformed
        )


class Exporter:
    """The exporter: sources, collector, registry, HTTP app."""

    def __init__(self, db: DatabaseSource, events: EventState, data_dir: Path, *, redis_enabled: bool = False) -> None:
        self.db = db
        self.events = events
        self.redis_enabled = redis_enabled
        self.registry = CollectorRegistry()
        self.collector = ContractCollector(events, PeakStore(data_dir / "peaks.json"))
        self.registry.register(self.collector)
        self.scrape_seconds = Histogram(
            "bot_exporter_scrape_duration_seconds",
            "Time to answer a scrape.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )

    async def metrics(self, _request: web.Request) -> web.Response:
        started = time.perf_counter()
        snap = await self.db.snapshot()
        self.collector.refresh(snap)
        self.collector.source_up["database"] = 1.0 if snap is not None else 0.0
        if self.redis_enabled:
            self.collector.source_up["redis"] = 1.0 if self.events.connected else 0.0
        else:
            self.collector.source_up.pop("redis", None)
        self.scrape_seconds.observe(time.perf_counter() - started)
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "database": self.db.up, "database_error": self.db.last_error or None})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        return app
