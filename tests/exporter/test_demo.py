"""The exporter's demo mode: its series move, the crash scenario crosses 20 % drawdown (the same for a seed), and
the stalled one stops trading."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from exporter.server import Exporter
from exporter.sources import DatabaseSource, EventState
from tests.exporter.bot_db import one, scrape


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
