"""What the exporter tests share: two bots with known rows in TRADERAGENT's schema, and a scrape read back as
numbers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from exporter.schema import bot_logs, bots, dca_history, exchange_credentials, grid_levels, metadata, orders, trades
from exporter.server import Exporter

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
