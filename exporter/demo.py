"""Demo mode: a SQLite database with TRADERAGENT's schema and a small deterministic market in which a grid bot, a
DCA bot and a hybrid bot trade in real time. The exporter reads it through its production code path.

Scenarios: `normal`; `crash` (ETH falls steadily, so dca-eth's drawdown passes 20 % within about two minutes, then
the market recovers after `crash_ticks` ticks); `stalled` (nothing trades any more, so NoRecentTrades fires);
`exchange-trouble` (after 10 ticks the exchange answers every call in 2.5-4 s and the bots' rate-limit headroom runs
down to a few calls, so HighAPILatency and RateLimitApproaching fire; after `crash_ticks` ticks it recovers and they
resolve). Same seed, same market.

Like a real bot, the demo bots publish their exchange-API calls as events (`price_updated` from fetch_ticker,
`order_placed` from create_order, `order_failed`, `exchange_error`, with `latency_ms` and `rate_limit_remaining`),
through the same path as real events: a `publish(channel, json)` given by the caller, which is Redis's
`trading_events:{bot}` channel when the exporter has `--redis-url`, and the exporter's own event state otherwise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from sqlalchemy import Connection, Engine, create_engine, insert, update

from exporter.schema import bot_logs, bots, dca_history, exchange_credentials, grid_levels, metadata, orders, trades

log = logging.getLogger("exporter.demo")
Scenario = Literal["normal", "crash", "stalled", "exchange-trouble"]
INVESTED = 10_000.0
RATE_LIMIT = 1200  # the exchange's request weight per minute, as Binance counts it
TROUBLE_STARTS = 10  # exchange-trouble: ticks of normal trading first
Publish = Callable[[str, bytes], None]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # the bot stores naive UTC


@dataclass
class DemoBot:
    id: int
    name: str
    symbol: str
    strategy: str
    price: float
    drift: float = 0.0
    base: float = 0.0
    cost: float = 0.0
    realised: float = 0.0
    dca_step: int = 0
    last_buy: float = 0.0
    grid: list[float] = field(default_factory=list)
    orders_seq: int = 0
    headroom: int = RATE_LIMIT  # calls left before the exchange's rate limit


class DemoMarket:
    """The simulation; `tick()` advances it one step and writes what happened."""

    def __init__(
        self,
        path: Path,
        scenario: Scenario = "normal",
        seed: int = 7,
        crash_ticks: int = 150,
        publish: Publish | None = None,
    ) -> None:
        """`crash_ticks`: how long the crash or the exchange trouble lasts, in ticks; `publish(channel, body)` takes
        the bots' events."""
        self.crash_ticks = crash_ticks
        self.publish = publish
        self.path = path
        self.scenario = scenario
        self.rng = random.Random(seed)  # noqa: S311 -- a reproducible market, not a secret
        # the exchange's answers draw from their own sequence: the market is the same with or without events
        self.api_rng = random.Random(seed + 1)  # noqa: S311
        self.ticks = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()
        self.engine: Engine = create_engine(f"sqlite:///{path}")
        metadata.create_all(self.engine)
        self.bots: list[DemoBot] = []
        self._seed()

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def _seed(self) -> None:
        now = _now()
        with self.engine.begin() as c:
            c.execute(
                insert(exchange_credentials).values(
                    name="demo",
                    exchange_id="binance",
                    api_key_encrypted="-",
                    api_secret_encrypted="-",  # noqa: S106 -- the demo has no exchange account
                    is_sandbox=True,
                    is_active=True,
                    created_at=now,
                    updated_at=now,
                )
            )
            for name, symbol, strategy, price in (
                ("grid-btc", "BTC/USDT", "grid", 60_000.0),
                ("dca-eth", "ETH/USDT", "dca", 3_000.0),
                ("hybrid-sol", "SOL/USDT", "hybrid", 150.0),
            ):
                res = c.execute(
                    insert(bots).values(
                        name=name,
                        credentials_id=1,
                        symbol=symbol,
                        strategy=strategy,
                        status="running",
                        config_version=1,
                        config_data=json.dumps({"demo": True}),
                        total_invested=INVESTED,
                        current_profit=0,
                        total_trades=0,
                        started_at=now - timedelta(hours=2),
                        created_at=now - timedelta(days=1),
                        updated_at=now,
                    )
                )
                pk = res.inserted_primary_key
                assert pk is not None
                bot = DemoBot(int(pk[0]), name, symbol, strategy, price)
                if strategy in ("grid", "hybrid"):
                    bot.grid = [price * (1 + 0.004 * k) for k in range(-5, 6) if k]
                    for lvl, p in enumerate(bot.grid):
                        c.execute(
                            insert(grid_levels).values(
                                bot_id=bot.id, level=lvl, price=p, is_active=True, created_at=now, updated_at=now
                            )
                        )
                self.bots.append(bot)
                # history, so that the last trade is not "now" in the stalled scenario
                self._trade(c, bot, "buy", 1000.0 / price, price, None, now - timedelta(hours=1, minutes=30))
        if self.scenario == "crash":
            self.bots[1].drift = -0.006

    def _trade(
        self, c: Connection, bot: DemoBot, side: str, amount: float, price: float, profit: float | None, at: datetime
    ) -> None:
        bot.orders_seq += 1
        oid = f"{bot.name}-{bot.orders_seq}"
        conn = c
        conn.execute(
            insert(orders).values(
                bot_id=bot.id,
                exchange_order_id=oid,
                symbol=bot.symbol,
                order_type="limit",
                side=side,
                price=price,
                amount=amount,
                filled=amount,
                status="closed",
                is_dca=bot.strategy == "dca",
                created_at=at,
                updated_at=at,
                filled_at=at,
            )
        )
        conn.execute(
            insert(trades).values(
                bot_id=bot.id,
                exchange_trade_id=f"t-{oid}",
                exchange_order_id=oid,
                symbol=bot.symbol,
                side=side,
                price=price,
                amount=amount,
                fee=0,
                fee_currency="USDT",
                profit=profit,
                executed_at=at,
                created_at=at,
            )
        )
        self._api_call(bot, "order_placed", "create_order", side=side, amount=round(amount, 8), price=round(price, 8))
        if side == "buy":
            bot.base += amount
            bot.cost += amount * price
        else:
            bot.base -= amount
            bot.cost -= amount * price

    @property
    def exchange_in_trouble(self) -> bool:
        start = TROUBLE_STARTS
        return self.scenario == "exchange-trouble" and start <= self.ticks < start + self.crash_ticks

    def _api_call(self, bot: DemoBot, event_type: str, endpoint: str, **data: object) -> None:
        """One exchange call of a bot, as the bot publishes it."""
        if self.publish is None:
            return
        rng = self.api_rng
        if self.exchange_in_trouble:
            latency = rng.uniform(2500, 4000)
            bot.headroom = max(0, bot.headroom - rng.randint(40, 120))
        else:
            latency = max(5.0, rng.gauss(120, 40))
            bot.headroom = min(RATE_LIMIT, bot.headroom + 200)
        body = {
            "event_type": event_type,
            "bot_name": bot.name,
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {
                "endpoint": endpoint,
                "latency_ms": round(latency, 1),
                "rate_limit_remaining": bot.headroom,
                **{k: str(v) for k, v in data.items()},
            },
        }
        self.publish(f"trading_events:{bot.name}", json.dumps(body).encode())

    def tick(self) -> None:
        self.ticks += 1
        if self.scenario == "crash" and self.ticks == self.crash_ticks:
            self.bots[1].drift = 0.012  # the market turns: the DCA bot sells at a profit, drawdown goes back
        now = _now()
        with self.engine.begin() as c:
            for bot in self.bots:
                old = bot.price
                bot.price *= 1 + bot.drift + self.rng.gauss(0, 0.002)
                if self.scenario != "stalled":
                    self._trade_step(c, bot, old, now)
                self._api_call(bot, "price_updated", "fetch_ticker", price=round(bot.price, 8))
                if self.exchange_in_trouble and self.api_rng.random() < 0.3:
                    self._api_call(bot, "exchange_error", "fetch_balance", error="RequestTimeout")
                profit = bot.base * bot.price - bot.cost
                c.execute(
                    update(bots).where(bots.c.id == bot.id).values(current_profit=round(profit, 8), updated_at=now)
                )
            if self.scenario != "stalled" and self.rng.random() < 0.05:
                bot = self.rng.choice(self.bots)
                self._api_call(bot, "order_failed", "create_order", error="InsufficientFunds")
                c.execute(
                    insert(orders).values(
                        bot_id=bot.id,
                        exchange_order_id=f"rej-{self.ticks}",
                        symbol=bot.symbol,
                        order_type="limit",
                        side="buy",
                        price=bot.price,
                        amount=0.001,
                        filled=0,
                        status="rejected",
                        is_dca=False,
                        created_at=now,
                        updated_at=now,
                    )
                )
                c.execute(
                    insert(bot_logs).values(
                        bot_id=bot.id, level="ERROR", message="order rejected: demo", created_at=now
                    )
                )

    def _trade_step(self, c: Connection, bot: DemoBot, old: float, now: datetime) -> None:
        if bot.strategy in ("grid", "hybrid"):
            for level in bot.grid:
                if old > level >= bot.price:  # fell through a level: buy
                    self._trade(c, bot, "buy", 200.0 / level, level, None, now)
                elif old < level <= bot.price and bot.base > 0:  # rose through a level: sell with the spacing
                    amount = min(bot.base, 200.0 / level)
                    gain = amount * level * 0.004
                    bot.realised += gain
                    self._trade(c, bot, "sell", amount, level, round(gain, 8), now)
        if bot.strategy in ("dca", "hybrid"):
            if bot.dca_step == 0 or bot.price <= bot.last_buy * 0.98:
                if bot.dca_step < 8:
                    bot.dca_step += 1
                    bot.last_buy = bot.price
                    amount = 1000.0 / bot.price
                    self._trade(c, bot, "buy", amount, bot.price, None, now)
                    avg = bot.cost / bot.base if bot.base else bot.price
                    c.execute(
                        insert(dca_history).values(
                            bot_id=bot.id,
                            trigger_price=bot.price,
                            buy_price=bot.price,
                            amount=amount,
                            total_cost=bot.cost,
                            average_price=avg,
                            dca_step=bot.dca_step,
                            executed_at=now,
                            created_at=now,
                        )
                    )
            elif bot.base > 0 and bot.price >= (bot.cost / bot.base) * 1.015:
                gain = bot.base * bot.price - bot.cost
                bot.realised += gain
                self._trade(c, bot, "sell", bot.base, bot.price, round(gain, 8), now)
                bot.base, bot.cost, bot.dca_step = 0.0, 0.0, 0

    async def run(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.to_thread(self.tick)
            await asyncio.sleep(interval)
