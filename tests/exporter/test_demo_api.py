"""The exporter's exchange-API series: the demo bots publish their calls through the same path as a real bot (Redis,
or in-process), the latency histogram's memory does not grow with the calls it counts, and the exchange-trouble
scenario slows the API and eats the rate limit, then recovers."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

from exporter.catalogue import API_LATENCY_BUCKETS
from exporter.demo import TROUBLE_STARTS, DemoMarket
from exporter.server import Exporter
from exporter.sources import DatabaseSource, EventState, LatencyHistogram, RedisEvents
from tests.exporter.bot_db import scrape
from tests.helpers import wait_for

API_SERIES = (
    "bot_api_requests_total",
    "bot_api_errors_total",
    "bot_api_request_duration_seconds_count",
    "bot_api_rate_limit_remaining",
)


def _sum(m: dict[str, Any], name: str, **labels: str) -> float:
    return sum(v for key, v in m.get(name, {}).items() if set(labels.items()) <= set(key))


def p95(before: dict[str, Any], after: dict[str, Any], bot: str, endpoint: str) -> float:
    """The 95th percentile of the calls between two scrapes, from the bucket counts (as histogram_quantile does)."""
    name = "bot_api_request_duration_seconds_bucket"
    rows = []
    for le in [*(str(b) for b in API_LATENCY_BUCKETS), "+Inf"]:
        labels = {"bot": bot, "endpoint": endpoint, "le": le}
        rows.append((float(le), _sum(after, name, **labels) - _sum(before, name, **labels)))
    total = rows[-1][1]
    return next(le for le, n in rows if n >= 0.95 * total)


def local_market(tmp_path: Path, scenario: Any, events: EventState, **kw: Any) -> DemoMarket:
    return DemoMarket(tmp_path / "demo.db", scenario, seed=5, publish=lambda _ch, body: events.apply(body), **kw)


async def test_demo_bots_publish_exchange_api_calls_without_redis(tmp_path: Path) -> None:
    events = EventState()
    market = local_market(tmp_path, "normal", events)
    exp = Exporter(DatabaseSource(market.url, ttl=0), events, tmp_path)
    for _ in range(20):
        market.tick()
    first = await scrape(exp)
    for name in API_SERIES:
        assert first.get(name), name
    for _ in range(20):
        market.tick()
    second = await scrape(exp)
    for bot in ("grid-btc", "dca-eth", "hybrid-sol"):
        calls = "bot_api_requests_total"
        # one ticker call a tick, and order calls when it trades
        assert (
            _sum(second, calls, bot=bot, endpoint="fetch_ticker")
            == _sum(first, calls, bot=bot, endpoint="fetch_ticker") + 20
        )
        assert _sum(second, "bot_api_request_duration_seconds_count", bot=bot) > _sum(
            first, "bot_api_request_duration_seconds_count", bot=bot
        )
        assert p95(first, second, bot, "fetch_ticker") <= 0.25  # a healthy exchange
        assert _sum(second, "bot_api_rate_limit_remaining", bot=bot) > 100
        assert (("bot", bot), ("endpoint", "fetch_ticker")) in second["bot_api_errors_total"]  # at 0, but there
    await exp.db.close()


async def test_demo_bots_publish_through_real_redis(redis_server: Any, tmp_path: Path) -> None:
    from exporter.__main__ import _redis_publisher

    url = f"redis://127.0.0.1:{redis_server['port']}/0"
    events = EventState()
    sub = RedisEvents(url, events)
    sub.start()
    await wait_for(lambda: events.connected, timeout=10)
    market = DemoMarket(tmp_path / "demo.db", "normal", seed=5, publish=_redis_publisher(url))
    exp = Exporter(DatabaseSource(market.url, ttl=0), events, tmp_path, redis_enabled=True)
    for _ in range(10):
        await asyncio.to_thread(market.tick)
    await wait_for(lambda: events.by_type.get("price_updated", 0) >= 30, timeout=10)
    m = await scrape(exp)
    for name in API_SERIES:
        assert m.get(name), name
    assert _sum(m, "bot_api_requests_total", bot="dca-eth", endpoint="fetch_ticker") >= 10
    assert m["bot_exporter_source_up"][(("source", "redis"),)] == 1
    await sub.stop()
    await exp.db.close()


async def test_exchange_trouble_slows_the_api_and_eats_the_rate_limit_then_recovers(tmp_path: Path) -> None:
    events = EventState()
    market = local_market(tmp_path, "exchange-trouble", events, crash_ticks=30)
    exp = Exporter(DatabaseSource(market.url, ttl=0), events, tmp_path)
    for _ in range(TROUBLE_STARTS - 1):
        market.tick()
    calm = await scrape(exp)
    for _ in range(30):
        market.tick()
    trouble = await scrape(exp)
    for _ in range(30):
        market.tick()
    after = await scrape(exp)
    for bot in ("grid-btc", "dca-eth", "hybrid-sol"):
        assert p95(calm, trouble, bot, "fetch_ticker") > 2  # HighAPILatency: p95 over 2 s
        assert _sum(trouble, "bot_api_rate_limit_remaining", bot=bot) < 10  # RateLimitApproaching: under 10
        assert p95(trouble, after, bot, "fetch_ticker") <= 0.25
        assert _sum(after, "bot_api_rate_limit_remaining", bot=bot) > 100
    assert _sum(trouble, "bot_api_errors_total", endpoint="fetch_balance") > 0
    await exp.db.close()


def test_the_latency_histogram_keeps_fixed_buckets_whatever_it_counts() -> None:
    rng = random.Random(1)
    values = [rng.expovariate(2.0) for _ in range(50_000)]
    hist = LatencyHistogram()
    for v in values:
        hist.observe(v)
    assert len(hist.counts) == len(API_LATENCY_BUCKETS) + 1
    buckets = dict(hist.cumulative())
    for le in API_LATENCY_BUCKETS:
        assert buckets[str(le)] == sum(1 for v in values if v <= le)  # Prometheus' `le`: at most the bound
    assert buckets["+Inf"] == len(values)
    assert abs(hist.total - sum(values)) < 1e-6


def test_events_with_bad_latencies_are_counted_as_malformed_not_observed() -> None:
    events = EventState()
    for latency in ("fast", True, -5, "nan"):
        body = {"event_type": "order_placed", "bot_name": "b", "data": {"latency_ms": latency}}
        events.apply(json.dumps(body))
    assert sum(h.counts[-1] + sum(h.counts[:-1]) for h in events.api_latency.values()) == 0
    assert events.malformed == 1  # "fast" is not a number; a flag, a negative or NaN latency is no observation
