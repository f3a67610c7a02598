"""Where the numbers come from: TRADERAGENT's database (aggregate queries at scrape time, cached, incremental over
trades) and its Redis event channel (what only events carry). Both only read; neither ever kills the process."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from exporter.catalogue import API_LATENCY_BUCKETS

log = logging.getLogger("exporter")
FAILED_STATUSES = ("rejected", "expired")
TRADE_CHUNK = 1_000_000  # trade ids read per query while catching up
_TRADES_SINCE = text(
    "SELECT bot_id, COUNT(*), "
    "SUM(CASE WHEN profit > 0 THEN 1 ELSE 0 END), SUM(CASE WHEN profit < 0 THEN 1 ELSE 0 END), "
    "SUM(COALESCE(profit, 0)), MAX(executed_at), "
    "SUM(CASE WHEN side = 'buy' THEN amount ELSE -amount END), "
    "SUM(CASE WHEN side = 'buy' THEN amount * price ELSE -(amount * price) END), "
    "MAX(CASE WHEN side = 'sell' THEN executed_at END) "
    "FROM trades WHERE id > :last AND id <= :upper GROUP BY bot_id"
)


def async_db_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


def _ts(value: Any) -> float | None:
    """The bot stores naive UTC datetimes (SQLite hands them back as text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return float(value.timestamp())


def _f(value: Any) -> float:
    return float(value) if value is not None else 0.0


@dataclass
class TradeTotals:
    """Per-bot aggregates over trades, advanced incrementally by trade id (trades are append-only)."""

    count: int = 0
    won: int = 0
    lost: int = 0
    realised: Decimal = Decimal(0)
    base: Decimal = Decimal(0)  # bought minus sold
    cost: Decimal = Decimal(0)  # quote spent minus quote received
    last_at: float | None = None
    last_sell_at: float | None = None


@dataclass
class BotRow:
    """One bot's numbers at one scrape."""

    name: str
    symbol: str
    strategy: str
    status: str
    invested: float
    profit: float
    started_at: float | None
    trades: TradeTotals
    open_orders: int = 0
    orders: int = 0
    failed: int = 0
    canceled: int = 0
    grid_active: int = 0
    dca_steps: int = 0
    errors: int = 0


@dataclass
class Snapshot:
    taken_at: float
    bots: list[BotRow]
    duration: float


class PeakStore:
    """Each bot's highest portfolio value, kept in a small JSON file so that a restart does not reset drawdown.

    Updates change memory only; `run` writes the file from a worker thread, at most once per `interval` and only
    when something changed, atomically (a temporary file, fsynced, renamed over the old one), and `flush` writes
    what is left at shutdown. A scrape never waits for the disk."""

    def __init__(self, path: Path, interval: float = 5.0) -> None:
        self.path = path
        self.interval = interval
        self.peaks: dict[str, float] = {}
        self._dirty = False
        try:
            data = json.loads(path.read_text())
            self.peaks = {str(k): float(v) for k, v in data.items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("peak file %s unreadable (%s); peaks start from the next scrape", path, exc)

    def update(self, bot: str, value: float) -> float:
        peak = max(self.peaks.get(bot, value), value)
        if self.peaks.get(bot) != peak:
            self.peaks[bot] = peak
            self._dirty = True
        return peak

    def forget_except(self, bots: set[str]) -> None:
        if set(self.peaks) - bots:
            self.peaks = {k: v for k, v in self.peaks.items() if k in bots}
            self._dirty = True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def flush(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        try:
            await asyncio.to_thread(self._write, dict(self.peaks))
        except OSError as exc:
            self._dirty = True  # tried again at the next interval
            log.warning("could not write the peak file %s: %s", self.path, exc)

    def _write(self, peaks: dict[str, float]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".peaks-")
        with os.fdopen(fd, "w") as fh:
            json.dump(peaks, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


class DatabaseSource:
    """Reads the bot's tables with a handful of indexed aggregate queries; at most one round per `ttl` seconds,
    however many Prometheus servers scrape at once."""

    def __init__(self, url: str, *, ttl: float = 5.0, timeout: float = 5.0, engine: AsyncEngine | None = None) -> None:
        if engine is None:
            kwargs: dict[str, Any] = {}
            if not url.startswith("sqlite"):
                kwargs = {
                    "pool_size": 2,
                    "max_overflow": 2,
                    "pool_pre_ping": True,
                    "connect_args": {"timeout": timeout},
                }
            engine = create_async_engine(async_db_url(url), **kwargs)
        self.engine = engine
        self.ttl = ttl
        self.timeout = timeout
        self._totals: dict[int, TradeTotals] = {}
        self._last_trade_id = 0
        self._snapshot: Snapshot | None = None
        self._inflight: asyncio.Task[Snapshot] | None = None
        self.up = False
        self.last_error = ""

    async def snapshot(self) -> Snapshot | None:
        """The newest snapshot, refreshed when older than ttl; None when the database cannot be read."""
        now = time.time()
        if self._snapshot is not None and now - self._snapshot.taken_at < self.ttl and self.up:
            return self._snapshot
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._refresh())
        try:
            self._snapshot = await asyncio.shield(self._inflight)
            self.up = True
            self.last_error = ""
            return self._snapshot
        except Exception as exc:
            self.up = False
            self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            log.warning("database unreadable: %s", self.last_error)
            return None

    async def _refresh(self) -> Snapshot:
        started = time.perf_counter()
        rows = await asyncio.wait_for(self._query(), timeout=self.timeout)
        return Snapshot(time.time(), rows, time.perf_counter() - started)

    async def _query(self) -> list[BotRow]:
        async with self.engine.connect() as conn:
            bots = (
                await conn.execute(
                    text(
                        "SELECT id, name, symbol, strategy, status, total_invested, current_profit, started_at "
                        "FROM bots"
                    )
                )
            ).all()
            newest = (await conn.execute(text("SELECT MAX(id) FROM trades"))).scalar()
            while newest is not None and self._last_trade_id < int(newest):
                # in id ranges: a first read of a large table makes progress that a timed-out scrape keeps
                upper = min(int(newest), self._last_trade_id + TRADE_CHUNK)
                rows = (await conn.execute(_TRADES_SINCE, {"last": self._last_trade_id, "upper": upper})).all()
                self._add_trades(rows)
                self._last_trade_id = upper
            orders = (
                await conn.execute(text("SELECT bot_id, status, COUNT(*) FROM orders GROUP BY bot_id, status"))
            ).all()
            grid = (
                await conn.execute(
                    text("SELECT bot_id, COUNT(*) FROM grid_levels WHERE is_active = :t GROUP BY bot_id"), {"t": True}
                )
            ).all()
            dca = (
                await conn.execute(
                    text("SELECT bot_id, MAX(dca_step), MAX(executed_at) FROM dca_history GROUP BY bot_id")
                )
            ).all()
            errors = (
                await conn.execute(
                    text("SELECT bot_id, COUNT(*) FROM bot_logs WHERE level IN ('ERROR', 'CRITICAL') GROUP BY bot_id")
                )
            ).all()
        out: dict[int, BotRow] = {}
        for bid, name, symbol, strategy, status, invested, profit, started in bots:
            out[bid] = BotRow(
                str(name),
                str(symbol),
                str(strategy),
                str(status),
                _f(invested),
                _f(profit),
                _ts(started),
                self._totals.get(bid, TradeTotals()),
            )
        for bid, status, n in orders:
            if bid not in out:
                continue
            r = out[bid]
            r.orders += int(n)
            if status == "open":
                r.open_orders += int(n)
            elif status in FAILED_STATUSES:
                r.failed += int(n)
            elif status == "canceled":
                r.canceled += int(n)
        for bid, n in grid:
            if bid in out:
                out[bid].grid_active = int(n)
        for bid, step, last_at in dca:
            if bid in out:
                r = out[bid]
                sold_after = r.trades.last_sell_at is not None and (_ts(last_at) or 0) < r.trades.last_sell_at
                r.dca_steps = 0 if sold_after else int(step or 0)
        for bid, n in errors:
            if bid in out:
                out[bid].errors = int(n)
        self._totals = {k: v for k, v in self._totals.items() if k in out}  # deleted bots disappear
        return list(out.values())

    def _add_trades(self, rows: Any) -> None:
        for bot_id, n, won, lost, profit, last_at, base, cost, last_sell in rows:
            t = self._totals.setdefault(bot_id, TradeTotals())
            t.count += int(n)
            t.won += int(won or 0)
            t.lost += int(lost or 0)
            t.realised += Decimal(profit or 0)
            t.base += Decimal(base or 0)
            t.cost += Decimal(cost or 0)
            t.last_at = max(filter(None, (t.last_at, _ts(last_at))), default=None)
            t.last_sell_at = max(filter(None, (t.last_sell_at, _ts(last_sell))), default=None)

    async def close(self) -> None:
        await self.engine.dispose()


@dataclass
class LatencyHistogram:
    """Exchange-API latency of one (bot, endpoint) in fixed buckets: memory and scrape cost stay the same however
    many calls were observed. `counts[i]` holds the observations in bucket i alone (the last one is +Inf)."""

    bounds: tuple[float, ...] = API_LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(API_LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus' buckets: observations <= each bound, then +Inf."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append((str(bound), float(running)))
        out.append(("+Inf", float(running + self.counts[-1])))
        return out


@dataclass
class EventState:
    """What the event channel told us, per bot."""

    last_price: dict[str, float] = field(default_factory=dict)
    last_event_at: dict[str, float] = field(default_factory=dict)
    api_requests: dict[tuple[str, str], int] = field(default_factory=dict)
    api_errors: dict[tuple[str, str], int] = field(default_factory=dict)
    api_latency: dict[tuple[str, str], LatencyHistogram] = field(default_factory=dict)
    rate_limit: dict[str, float] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    connected: bool = False

    # event type -> the exchange endpoint it implies
    ENDPOINTS: ClassVar[dict[str, str]] = {
        "order_placed": "create_order",
        "order_failed": "create_order",
        "order_cancelled": "cancel_order",
        "order_filled": "fetch_order",
        "price_updated": "fetch_ticker",
        "exchange_error": "unknown",
    }

    def apply(self, raw: bytes | str) -> None:
        try:
            ev = json.loads(raw)
            etype = str(ev["event_type"])
            bot = str(ev["bot_name"])
            data = ev.get("data") or {}
            if not isinstance(data, dict):
                raise ValueError("data is not an object")
        except (ValueError, KeyError, TypeError):
            self.malformed += 1
            return
        self.by_type[etype] = self.by_type.get(etype, 0) + 1
        self.last_event_at[bot] = time.time()
        endpoint = str(data.get("endpoint") or self.ENDPOINTS.get(etype, ""))
        if endpoint and etype in self.ENDPOINTS:
            key = (bot, endpoint)
            self.api_requests[key] = self.api_requests.get(key, 0) + 1
            if etype in ("order_failed", "exchange_error"):
                self.api_errors[key] = self.api_errors.get(key, 0) + 1
            latency = data.get("latency_ms")
            if isinstance(latency, int | float | str) and not isinstance(latency, bool):
                try:
                    seconds = float(latency) / 1000
                except ValueError:
                    self.malformed += 1
                else:
                    if seconds >= 0 and seconds == seconds:  # NaN and negative latencies are not observations
                        hist = self.api_latency.get(key)
                        if hist is None:
                            hist = self.api_latency[key] = LatencyHistogram()
                        hist.observe(seconds)
        if "rate_limit_remaining" in data:
            try:
                self.rate_limit[bot] = float(data["rate_limit_remaining"])
            except (TypeError, ValueError):
                self.malformed += 1
        if etype == "price_updated":
            try:
                self.last_price[bot] = float(data["price"])
            except (KeyError, TypeError, ValueError):
                self.malformed += 1


class RedisEvents:
    """Subscribes to trading_events:* and feeds EventState; reconnects with back-off when Redis goes away."""

    def __init__(self, url: str, state: EventState) -> None:
        self.url = url
        self.state = state
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        delay = 0.5
        while True:
            client = aioredis.from_url(self.url, socket_connect_timeout=3, health_check_interval=10)
            try:
                pubsub = client.pubsub()
                await pubsub.psubscribe("trading_events:*")
                self.state.connected = True
                delay = 0.5
                log.info("subscribed to trading_events:*")
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if msg is not None and msg.get("type") == "pmessage":
                        self.state.apply(msg["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.state.connected = False
                log.warning("redis unavailable (%s); reconnecting in %.1fs", type(exc).__name__, delay)
            finally:
                self.state.connected = False
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311 -- jitter
            delay = min(30.0, delay * 2)
