"""The exporter's Redis events: they move the counters, a malformed one is counted, and a Redis restart is
survived (the source is down meanwhile)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exporter.server import Exporter
from exporter.sources import DatabaseSource, EventState
from tests.exporter.bot_db import NOW, one, scrape
from tests.helpers import wait_for


async def test_redis_events_move_counters_and_a_redis_restart_is_survived(
    redis_server: Any, seeded_pg: str, tmp_path: Path
) -> None:
    import redis.asyncio as aioredis

    from exporter.sources import RedisEvents

    url = f"redis://127.0.0.1:{redis_server['port']}/0"
    events = EventState()
    sub = RedisEvents(url, events)
    sub.start()
    exp = Exporter(DatabaseSource(seeded_pg, ttl=0), events, tmp_path, redis_enabled=True)
    await wait_for(lambda: events.connected, timeout=10)

    async def publish(*msgs: Any) -> None:
        client = aioredis.from_url(url)
        for m in msgs:
            await client.publish("trading_events:grid-btc", m if isinstance(m, str) else json.dumps(m))
        await client.aclose()

    base = {"bot_name": "grid-btc", "timestamp": NOW.isoformat()}
    await publish(
        {**base, "event_type": "order_failed", "data": {"latency_ms": 80}},
        "{not json",
        {**base, "event_type": "price_updated", "data": {"price": "61000"}},
        {**base, "event_type": "order_placed", "data": {}},
    )
    await wait_for(lambda: events.by_type.get("order_placed", 0) == 1, timeout=5)
    m = await scrape(exp)
    assert m["bot_api_errors_total"][(("bot", "grid-btc"), ("endpoint", "create_order"))] == 1
    assert m["bot_api_requests_total"][(("bot", "grid-btc"), ("endpoint", "create_order"))] == 2
    assert m["bot_exporter_events_malformed_total"][()] == 1
    assert m["bot_exporter_source_up"][(("source", "redis"),)] == 1
    # realised and unrealised P/L at the last price: net 0.01 BTC worth 610 at 61000, bought for a net 580
    assert one(m, "bot_portfolio_value_usdt", "grid-btc") == pytest.approx(10000 + 0.01 * 61000 - 580)
    redis_server["proc"].kill()
    redis_server["proc"].wait()
    await wait_for(lambda: not events.connected, timeout=10)
    assert (await scrape(exp))["bot_exporter_source_up"][(("source", "redis"),)] == 0
    redis_server["proc"] = redis_server["start"]()
    await wait_for(lambda: events.connected, timeout=20)
    await publish({**base, "event_type": "order_placed", "data": {}})
    await wait_for(lambda: events.by_type.get("order_placed", 0) == 2, timeout=5)
    await sub.stop()
    await exp.db.close()
