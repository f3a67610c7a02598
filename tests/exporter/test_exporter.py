"""The exporter against TRADERAGENT's real schema on a real PostgreSQL, real Redis events, and its demo mode."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from exporter.catalogue import CONTRACT, BotMetrics
from exporter.schema import bot_logs, bots, dca_history, orders, trades
from exporter.server import Exporter
from exporter.sources import DatabaseSource, EventState
from tests.exporter.bot_db import NOW, one, scrape
from tests.fakes.tcp import TcpProxy


async def test_every_metric_has_its_exact_value_from_postgres(seeded_pg: str, tmp_path: Path) -> None:
    exp = Exporter(DatabaseSource(seeded_pg, ttl=0), EventState(), tmp_path)
    m = await scrape(exp)
    assert one(m, "bot_portfolio_value_usdt", "grid-btc") == 10500
    assert one(m, "bot_portfolio_return_percent", "grid-btc") == 5.0
    assert one(m, "bot_portfolio_return_percent", "dca-eth") == -5.0
    assert one(m, "bot_total_trades", "grid-btc") == 5
    assert one(m, "bot_winning_trades", "grid-btc") == 2
    assert one(m, "bot_losing_trades", "grid-btc") == 1
    assert one(m, "bot_win_rate_percent", "grid-btc") == pytest.approx(200 / 3)
    assert one(m, "bot_open_orders", "grid-btc") == 2
    assert one(m, "bot_total_orders_total", "grid-btc") == 6
    assert one(m, "bot_failed_orders_total", "grid-btc") == 2  # rejected + expired
    assert one(m, "bot_canceled_orders_total", "grid-btc") == 1
    assert one(m, "bot_grid_levels_active", "grid-btc") == 3
    assert one(m, "bot_dca_steps_active", "dca-eth") == 2
    assert one(m, "bot_position_size_base", "dca-eth") == pytest.approx(2.0)
    assert one(m, "bot_position_size_quote", "dca-eth") == pytest.approx(5900)
    assert one(m, "bot_errors_total", "grid-btc") == 2
    assert one(m, "bot_last_trade_timestamp", "grid-btc") == pytest.approx(
        (NOW - timedelta(minutes=10)).replace(tzinfo=__import__("datetime").UTC).timestamp()
    )
    # started 3 h before NOW, which was taken when this module was collected, however long ago that was
    since_start = (datetime.utcnow() - (NOW - timedelta(hours=3))).total_seconds()
    assert one(m, "bot_uptime_seconds", "grid-btc") == pytest.approx(since_start, abs=60)
    assert one(m, "bot_portfolio_drawdown_percent", "dca-eth") == pytest.approx(5.0)  # 4750 below its 5000
    assert m["bot_exporter_source_up"][(("source", "database"),)] == 1
    for labels in m["bot_portfolio_value_usdt"]:
        assert dict(labels).keys() == {"bot", "symbol", "strategy"}
    await exp.db.close()


async def test_drawdown_after_a_peak_and_a_fall_survives_a_restart(seeded_pg: str, tmp_path: Path) -> None:
    from sqlalchemy import update
    from sqlalchemy.ext.asyncio import create_async_engine

    eng = create_async_engine(seeded_pg.replace("postgresql://", "postgresql+asyncpg://"))

    async def profit(v: float) -> None:
        async with eng.begin() as c:
            await c.execute(update(bots).where(bots.c.name == "grid-btc").values(current_profit=v))

    exp = Exporter(DatabaseSource(seeded_pg, ttl=0), EventState(), tmp_path)
    await profit(2000)  # peak 12000
    await scrape(exp)
    await profit(-1000)  # 9000: 25 % below the peak
    assert one(await scrape(exp), "bot_portfolio_drawdown_percent", "grid-btc") == pytest.approx(25.0)
    assert not (tmp_path / "peaks.json").exists()  # a scrape never waits for the disk
    await exp.collector.peaks.flush()  # what the periodic writer and the shutdown do, in a worker thread
    assert json.loads((tmp_path / "peaks.json").read_text())["grid-btc"] == 12000.0
    await exp.db.close()
    again = Exporter(DatabaseSource(seeded_pg, ttl=0), EventState(), tmp_path)  # a new process, same data dir
    assert one(await scrape(again), "bot_portfolio_drawdown_percent", "grid-btc") == pytest.approx(25.0)
    await again.db.close()
    await eng.dispose()


async def test_new_trades_are_counted_incrementally_and_deleted_bots_disappear(seeded_pg: str, tmp_path: Path) -> None:
    from sqlalchemy import delete
    from sqlalchemy.ext.asyncio import create_async_engine

    exp = Exporter(DatabaseSource(seeded_pg, ttl=0), EventState(), tmp_path)
    await scrape(exp)
    eng = create_async_engine(seeded_pg.replace("postgresql://", "postgresql+asyncpg://"))
    async with eng.begin() as c:
        await c.execute(
            insert(trades).values(
                bot_id=2,
                exchange_trade_id="n1",
                exchange_order_id="n1",
                symbol="ETH/USDT",
                side="sell",
                price=3100,
                amount=2,
                fee=0,
                fee_currency="USDT",
                profit=300,
                executed_at=NOW,
                created_at=NOW,
            )
        )
    m = await scrape(exp)
    assert one(m, "bot_total_trades", "dca-eth") == 3 and one(m, "bot_winning_trades", "dca-eth") == 1
    assert one(m, "bot_dca_steps_active", "dca-eth") == 0  # the position was sold
    async with eng.begin() as c:
        for t in (trades, orders, dca_history, bot_logs):
            await c.execute(delete(t).where(t.c.bot_id == 2))
        await c.execute(delete(bots).where(bots.c.id == 2))
    m = await scrape(exp)
    assert all(("bot", "dca-eth") not in labels for labels in m["bot_total_trades"])
    await eng.dispose()
    await exp.db.close()


async def test_cache_serves_concurrent_scrapes_with_one_round_of_queries(seeded_pg: str, tmp_path: Path) -> None:
    src = DatabaseSource(seeded_pg, ttl=30)
    calls = 0
    orig = src._query

    async def counted() -> Any:
        nonlocal calls
        calls += 1
        return await orig()

    src._query = counted  # type: ignore[method-assign]
    exp = Exporter(src, EventState(), tmp_path)
    await asyncio.gather(*(scrape(exp) for _ in range(5)))
    await scrape(exp)
    assert calls == 1
    await src.close()


async def test_database_down_source_up_0_no_stale_series_then_recovery(seeded_pg: str, tmp_path: Path) -> None:
    proxy = TcpProxy(5432)
    await proxy.start()
    url = seeded_pg.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    exp = Exporter(DatabaseSource(url, ttl=0, timeout=2), EventState(), tmp_path)
    assert "bot_total_trades" in await scrape(exp)
    await proxy.cut()
    m = await scrape(exp)
    assert m["bot_exporter_source_up"][(("source", "database"),)] == 0
    assert "bot_total_trades" not in m  # not served as if fresh
    await proxy.start()
    m = await scrape(exp)
    assert m["bot_exporter_source_up"][(("source", "database"),)] == 1 and "bot_total_trades" in m
    await exp.db.close()


async def test_exactly_the_contract_is_exposed_under_bot(seeded_pg: str, tmp_path: Path) -> None:
    events = EventState()
    events.apply(
        json.dumps(
            {
                "event_type": "exchange_error",
                "bot_name": "grid-btc",
                "timestamp": "x",
                "data": {"endpoint": "fetch_balance", "latency_ms": 120, "rate_limit_remaining": 7},
            }
        )
    )
    exp = Exporter(DatabaseSource(seeded_pg, ttl=0), events, tmp_path)
    resp = await exp.metrics(None)  # type: ignore[arg-type]
    text = resp.body.decode()  # type: ignore[union-attr]
    families = {f.name for f in text_string_to_metric_families(text)}
    contract = {s.name for s in CONTRACT}
    assert contract <= families
    extra = {f for f in families if f.startswith("bot_") and not f.startswith("bot_exporter_")} - contract
    assert extra == set()
    for spec in CONTRACT:
        assert f"# TYPE {spec.exposed} {spec.kind}" in text
    assert "SECRET" not in text  # exchange_credentials is never read
    await exp.db.close()


def test_in_process_api_exposes_the_contract() -> None:
    m = BotMetrics()
    m.record_trade("b", "BTC/USDT", "grid", profit=5)
    m.record_trade("b", "BTC/USDT", "grid", profit=-1)
    m.record_order("b", "BTC/USDT", "grid", "failed")
    with pytest.raises(RuntimeError), m.time_api_call("b", "create_order"):
        raise RuntimeError("exchange down")

    @m.timed("b", "fetch_ticker")
    async def fetch() -> int:
        return 1

    assert asyncio.run(fetch()) == 1
    from prometheus_client import generate_latest

    text = generate_latest(m.registry).decode()
    assert 'bot_win_rate_percent{bot="b",strategy="grid",symbol="BTC/USDT"} 50.0' in text
    assert 'bot_api_errors_total{bot="b",endpoint="create_order"} 1.0' in text
    assert 'bot_api_requests_total{bot="b",endpoint="fetch_ticker"} 1.0' in text
    assert 'bot_failed_orders_total{bot="b",strategy="grid",symbol="BTC/USDT"} 1.0' in text
    assert "_created" not in text


async def test_a_large_trade_table_is_read_in_id_ranges_that_survive_a_failed_scrape(
    seeded_pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first scan that outlasts the query timeout (or loses its connection) keeps the ranges it read."""
    import exporter.sources as sources

    monkeypatch.setattr(sources, "TRADE_CHUNK", 2)  # 7 trades: four ranges
    src = DatabaseSource(seeded_pg, ttl=0)
    calls = 0
    orig = src._add_trades

    def cut_after_first_range(rows: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise TimeoutError("the scrape's time is up")  # what asyncio.wait_for raises into the query
        orig(rows)

    src._add_trades = cut_after_first_range  # type: ignore[method-assign]
    exp = Exporter(src, EventState(), tmp_path)
    first = await scrape(exp)
    assert first["bot_exporter_source_up"][(("source", "database"),)] == 0
    assert "bot_total_trades" not in first
    assert src._last_trade_id == 2  # the range read before the cut is kept
    m = await scrape(exp)
    assert one(m, "bot_total_trades", "grid-btc") == 5 and one(m, "bot_total_trades", "dca-eth") == 2
    await src.close()
