"""Exporter scrape benchmark (issue: exporter).

10 bots, N trades and 100,000 orders in PostgreSQL (TRADERAGENT's schema); `bot-exporter` as its own process
(cache off, so every scrape queries); p50/p99 of GET /metrics against `SELECT 1` round-trips from the same client,
and the exporter's RSS. The first scrape reads every trade once; later ones read only new trades (by id).

    .venv/bin/python bench/exporter_scrape.py --trades 1000000 [--trades 10000000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import PG_ADMIN_URL, free_port  # noqa: E402

DB = "bench_exporter"


async def load(trades: int, orders: int) -> None:
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {DB}")
    await admin.close()
    from sqlalchemy.ext.asyncio import create_async_engine

    from exporter.schema import metadata

    eng = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DB}")
    async with eng.begin() as c:
        await c.run_sync(metadata.create_all)
    await eng.dispose()
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{DB}")
    t0 = time.perf_counter()
    await conn.execute(
        "INSERT INTO exchange_credentials (name, exchange_id, api_key_encrypted, api_secret_encrypted,"
        " is_sandbox, is_active, created_at, updated_at) VALUES ('b','binance','-','-',false,true,"
        " now(), now())"
    )
    await conn.execute(
        "INSERT INTO bots (name, credentials_id, symbol, strategy, status, config_version, config_data,"
        " total_invested, current_profit, total_trades, started_at, created_at, updated_at)"
        " SELECT 'bot-' || g, 1, 'BTC/USDT', (ARRAY['grid','dca','hybrid'])[1 + g % 3]::strategy_type,"
        " 'running', 1, '{}', 10000, 100, 0, now() - interval '1 day', now(), now() FROM generate_series(1, 10) g"
    )
    await conn.execute(
        "INSERT INTO trades (bot_id, exchange_trade_id, exchange_order_id, symbol, side, price, amount, fee,"
        " fee_currency, profit, executed_at, created_at)"
        " SELECT 1 + g % 10, 't' || g, 'o' || g, 'BTC/USDT', (ARRAY['buy','sell'])[1 + g % 2]::trade_side,"
        " 60000 + g % 1000, 0.001, 0, 'USDT', CASE WHEN g % 2 = 1 THEN (g % 7) - 3 END,"
        f" now() - (g || ' seconds')::interval, now() FROM generate_series(1, {trades}) g"
    )
    await conn.execute(
        "INSERT INTO orders (bot_id, exchange_order_id, symbol, order_type, side, price, amount, filled, status,"
        " is_dca, created_at, updated_at)"
        " SELECT 1 + g % 10, 'o' || g, 'BTC/USDT', 'limit', 'buy', 60000, 0.001, 0,"
        " (ARRAY['open','closed','closed','closed','canceled','rejected','expired'])[1 + g % 7]::order_status,"
        f" false, now(), now() FROM generate_series(1, {orders}) g"
    )
    await conn.execute("VACUUM ANALYZE")
    await conn.close()
    print(f"loaded {trades:,} trades and {orders:,} orders in {time.perf_counter() - t0:.0f}s")


def pct(v: list[float], p: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(p * len(s)))] * 1000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure(n: int) -> None:
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{DB}")
    base = []
    for _ in range(200):
        t = time.perf_counter()
        await conn.fetchval("SELECT 1")
        base.append(time.perf_counter() - t)
    port = free_port()
    data = Path(f"/tmp/bench-exporter-{port}")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            "--listen",
            f"127.0.0.1:{port}",
            "--database-url",
            f"postgresql://postgres@127.0.0.1:5432/{DB}",
            "--cache-ttl",
            "0",
            "--query-timeout",
            "120",
            "--data-dir",
            str(data),
        ],
        cwd=str(ROOT),
        stderr=subprocess.DEVNULL,
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )
    try:
        async with httpx.AsyncClient(timeout=300) as client:
            for _ in range(100):
                try:
                    await client.get(f"http://127.0.0.1:{port}/healthz")
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            t = time.perf_counter()
            r = await client.get(f"http://127.0.0.1:{port}/metrics")
            first = time.perf_counter() - t
            assert "bot_total_trades" in r.text
            # the bot keeps trading: 100 new trades between scrapes
            times = []
            for i in range(50):
                await conn.execute(
                    "INSERT INTO trades (bot_id, exchange_trade_id, exchange_order_id, symbol, side, price, amount,"
                    " fee, fee_currency, profit, executed_at, created_at) SELECT 1 + g % 10, 'n' || g, 'n', 'BTC/USDT',"
                    " 'sell', 60000, 0.001, 0, 'USDT', 1, now(), now()"
                    f" FROM generate_series({i * 100}, {i * 100 + 99}) g"
                )
                t = time.perf_counter()
                await client.get(f"http://127.0.0.1:{port}/metrics")
                times.append(time.perf_counter() - t)
            rss = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
        await conn.close()
    print(
        f"{n:>12,} trades  first scrape {first * 1000:8.0f} ms   scrape p50 {pct(times, 0.5):6.1f} ms  "
        f"p99 {pct(times, 0.99):6.1f} ms   SELECT 1 p50 {pct(base, 0.5):5.2f} ms   "
        f"ratio p50 {statistics.median(times) / statistics.median(base):6.1f}x   RSS {rss:5.1f} MB"
        "   (targets: p50 < 100 ms, RSS < 80 MB)"
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trades", type=int, action="append")
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs (the tests do)")
    a = ap.parse_args()
    if a.quick:
        vars(a).update({"trades": [10_000], "orders": 1_000})
    for n in a.trades or [1_000_000]:
        await load(n, a.orders)
        await measure(n)
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
