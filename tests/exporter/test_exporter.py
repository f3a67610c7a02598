"""The exporter against TRADERAGENT's real schema on a real PostgreSQL, real Redis events, and its demo mode."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from exporter.catalogue import CONTRACT, BotMetrics
from exporter.schema import bot_logs, bots, dca_history, exchange_credentials, grid_levels, metadata, orders, trades
from exporter.server import Exporter
from exporter.sources import DatabaseSource, EventState
from tests.fakes.tcp import TcpProxy
from tests.helpers import free_port, need, wait_for

NOW = datetime.utcnow().replace(microsecond=0)


def seed(url: str) -> None:
    """Two bots with known rows."""
    import asyncio as _a

    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> None:
        e = create_async_engine(
            url.replace("postgresql://", "postgresql+asyncpg://").replace("sqlite:///", "sqlite+aiosqlite:///")
        )
        async with e.begin() as c:
            await c.run_sync(metadata.create_all)
            await c.execute(
                insert(exchange_credentials).values(
                    name="main",
                    exchange_id="binance",
                    api_key_encrypted="SECRET-KEY",
                    api_secret_encrypted="SECRET",
                    is_sandbox=False,
                    is_active=True,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
            for name, symbol, strategy, invested, profit in (
                ("grid-btc", "BTC/USDT", "grid", 10000, 500),
                ("dca-eth", "ETH/USDT", "dca", 5000, -250),
            ):
                await c.execute(
                    insert(bots).values(
                        name=name,
                        credentials_id=1,
                        symbol=symbol,
                        strategy=strategy,
                        status="running",
                        config_version=1,
                        config_data="{}",
                        total_invested=invested,
                        current_profit=profit,
                        total_trades=0,
                        started_at=NOW - timedelta(hours=3),
                        created_at=NOW,
                        updated_at=NOW,
                    )
                )
            t: list[tuple[int, str, float, int, int | None, int]] = [  # bot, side, amount, price, profit, minutes ago
                (1, "buy", 0.1, 60000, None, 50),
                (1, "sell", 0.05, 61000, 50, 40),
                (1, "sell", 0.05, 59000, -50, 30),
                (1, "buy", 0.02, 60000, None, 20),
                (1, "sell", 0.01, 62000, 20, 10),
                (2, "buy", 1.0, 3000, None, 100),
                (2, "buy", 1.0, 2900, None, 90),
            ]
            for i, (bid, side, amount, price, gain, ago) in enumerate(t):
                await c.execute(
                    insert(trades).values(
                        bot_id=bid,
                        exchange_trade_id=f"t{i}",
                        exchange_order_id=f"o{i}",
                        symbol="X",
                        side=side,
                        price=price,
                        amount=amount,
                        fee=0,
                        fee_currency="USDT",
                        profit=gain,
                        executed_at=NOW - timedelta(minutes=ago),
                        created_at=NOW,
                    )
                )
            for i, (bid, status) in enumerate(
                [
                    (1, "open"),
                    (1, "open"),
                    (1, "closed"),
                    (1, "rejected"),
                    (1, "expired"),
                    (1, "canceled"),
                    (2, "open"),
                    (2, "closed"),
                ]
            ):
                await c.execute(
                    insert(orders).values(
                        bot_id=bid,
                        exchange_order_id=f"x{i}",
                        symbol="X",
                        order_type="limit",
                        side="buy",
                        price=1,
                        amount=1,
                        filled=0,
                        status=status,
                        is_dca=bid == 2,
                        created_at=NOW,
                        updated_at=NOW,
                    )
                )
            for lvl in range(5):
                await c.execute(
                    insert(grid_levels).values(
                        bot_id=1, level=lvl, price=60000 + lvl, is_active=lvl < 3, created_at=NOW, updated_at=NOW
                    )
                )
            for step in (1, 2):
                await c.execute(
                    insert(dca_history).values(
                        bot_id=2,
                        trigger_price=1,
                        buy_price=1,
                        amount=1,
                        total_cost=1,
                        average_price=1,
                        dca_step=step,
                        executed_at=NOW - timedelta(minutes=100 - step * 10),
                        created_at=NOW,
                    )
                )
            for level in ("ERROR", "CRITICAL", "WARNING", "INFO"):
                await c.execute(insert(bot_logs).values(bot_id=1, level=level, message="m", created_at=NOW))
        await e.dispose()

    _a.run(run())


async def scrape(exp: Exporter) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    resp = await exp.metrics(None)  # type: ignore[arg-type]
    assert resp.body is not None
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(resp.body.decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def one(m: dict[str, Any], name: str, bot: str) -> float:
    vals = [v for labels, v in m[name].items() if ("bot", bot) in labels]
    assert len(vals) == 1, (name, bot, m.get(name))
    return float(vals[0])


@pytest.fixture
def seeded_pg(pg_url: str) -> str:
    seed(pg_url)
    return pg_url


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


@pytest.fixture
def redis_server(tmp_path: Path) -> Any:
    binary = shutil.which("redis-server")
    need(binary is not None, "redis-server binary")
    port = free_port()

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                str(binary),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        )

    proc = start()
    state = {"proc": proc, "port": port, "start": start}
    yield state
    state["proc"].kill()  # type: ignore[attr-defined]


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


async def test_demo_mode_series_move_and_the_crash_crosses_20_percent(tmp_path: Path) -> None:
    from exporter.demo import DemoMarket

    market = DemoMarket(tmp_path / "demo.db", "crash", seed=3)
    exp = Exporter(DatabaseSource(market.url, ttl=0), EventState(), tmp_path)
    first = await scrape(exp)
    crossed_at = None
    for tick in range(1, 200):
        market.tick()
        if tick % 10 == 0:
            m = await scrape(exp)
            if one(m, "bot_portfolio_drawdown_percent", "dca-eth") > 20:
                crossed_at = tick
                break
    assert crossed_at is not None and crossed_at <= 120  # about two minutes at the default 1 s tick
    assert one(m, "bot_total_trades", "grid-btc") > one(first, "bot_total_trades", "grid-btc")
    assert one(m, "bot_portfolio_drawdown_percent", "grid-btc") < 20
    again = DemoMarket(tmp_path / "again.db", "crash", seed=3)
    for _ in range(crossed_at):
        again.tick()
    assert [b.price for b in again.bots] == [b.price for b in market.bots]  # deterministic for a seed
    await exp.db.close()


async def test_stalled_demo_stops_trading(tmp_path: Path) -> None:
    from exporter.demo import DemoMarket

    market = DemoMarket(tmp_path / "demo.db", "stalled", seed=1)
    exp = Exporter(DatabaseSource(market.url, ttl=0), EventState(), tmp_path)
    before = await scrape(exp)
    for _ in range(30):
        market.tick()
    after = await scrape(exp)
    assert one(after, "bot_total_trades", "grid-btc") == one(before, "bot_total_trades", "grid-btc")
    assert one(after, "bot_last_trade_timestamp", "grid-btc") < datetime.utcnow().timestamp() - 3600
    await exp.db.close()


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
