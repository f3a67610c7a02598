"""The `bot-exporter` command: TRADERAGENT's Prometheus exporter (default :9100)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from exporter.server import Exporter
from exporter.sources import DatabaseSource, EventState, RedisEvents


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bot-exporter", description="TRADERAGENT's Prometheus exporter")
    p.add_argument(
        "--listen",
        default=os.environ.get("BOT_EXPORTER_LISTEN", "127.0.0.1:9100"),
        help="HOST:PORT to serve /metrics on; or $BOT_EXPORTER_LISTEN (default: %(default)s)",
    )
    p.add_argument(
        "--database-url",
        default=os.environ.get("BOT_EXPORTER_DATABASE_URL"),
        help="the bot's database (postgresql://... or sqlite:///...); or $BOT_EXPORTER_DATABASE_URL",
    )
    p.add_argument(
        "--redis-url",
        default=os.environ.get("BOT_EXPORTER_REDIS_URL"),
        help="subscribe to trading_events:* (optional); or $BOT_EXPORTER_REDIS_URL",
    )
    p.add_argument(
        "--data-dir",
        default=os.environ.get("BOT_EXPORTER_DATA_DIR", "data/exporter"),
        help="where the drawdown peaks are kept; or $BOT_EXPORTER_DATA_DIR (default: %(default)s)",
    )
    p.add_argument(
        "--cache-ttl", type=float, default=5.0, help="seconds a database read serves scrapes (default: %(default)s)"
    )
    p.add_argument(
        "--query-timeout", type=float, default=5.0, help="seconds a database read may take (default: %(default)s)"
    )
    p.add_argument("--demo", action="store_true", help="simulate bots trading into a local SQLite database")
    p.add_argument(
        "--demo-scenario",
        choices=["normal", "crash", "stalled", "exchange-trouble"],
        default="normal",
        help="crash: a drawdown past 20%% that recovers; stalled: no trades; exchange-trouble: slow exchange API "
        "and rate limit nearly used up, then recovery (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=7, help="the demo market's random seed (default: %(default)s)")
    p.add_argument(
        "--demo-interval", type=float, default=1.0, help="seconds between market ticks (default: %(default)s)"
    )
    p.add_argument(
        "--demo-crash-ticks",
        type=int,
        default=None,
        help="crash and exchange-trouble: ticks before the recovery (default: 150 for crash; 480 for "
        "exchange-trouble, long enough for HighAPILatency's 5 minutes)",
    )
    return p


async def serve(args: argparse.Namespace) -> int:
    host, _, port = args.listen.rpartition(":")
    data_dir = Path(args.data_dir)
    demo_task = None
    events = EventState()
    if args.demo:
        from exporter.demo import DemoMarket

        publish = _redis_publisher(args.redis_url) if args.redis_url else _local_publisher(events)
        ticks = args.demo_crash_ticks or (480 if args.demo_scenario == "exchange-trouble" else 150)
        market = DemoMarket(data_dir / "demo.db", args.demo_scenario, args.seed, ticks, publish)
        url = market.url
        demo_task = asyncio.create_task(market.run(args.demo_interval))
    elif args.database_url:
        url = args.database_url
    else:
        print("bot-exporter: give --database-url (or --demo)", file=sys.stderr)
        return 2
    redis = RedisEvents(args.redis_url, events) if args.redis_url else None
    exporter = Exporter(
        DatabaseSource(url, ttl=args.cache_ttl, timeout=args.query_timeout),
        events,
        data_dir,
        redis_enabled=redis is not None,
    )
    if redis is not None:
        redis.start()
    peaks = exporter.collector.peaks
    peaks_task = asyncio.create_task(peaks.run(), name="peak-file")
    runner = web.AppRunner(exporter.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host.strip("[]") or None, int(port)).start()
    logging.getLogger("exporter").info("bot-exporter on %s%s", args.listen, " (demo)" if args.demo else "")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if demo_task is not None:
        demo_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await demo_task
    if redis is not None:
        await redis.stop()
    await runner.cleanup()
    peaks_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await peaks_task
    await peaks.flush()  # the peaks of the last scrapes survive the restart
    await exporter.db.close()
    return 0


def _local_publisher(events: EventState) -> Callable[[str, bytes], None]:
    """Without Redis, the demo's events go straight to the exporter's event state, on the event loop (the market
    ticks in a worker thread)."""
    loop = asyncio.get_running_loop()

    def publish(_channel: str, body: bytes) -> None:
        loop.call_soon_threadsafe(events.apply, body)

    return publish


def _redis_publisher(url: str) -> Callable[[str, bytes], None]:
    """With Redis, the demo bots publish on trading_events:{bot}, as the real bot does; a Redis that is away loses
    the events (pub/sub keeps nothing) and is reported once per outage."""
    import redis
    from redis.exceptions import RedisError

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    failing = False

    def publish(channel: str, body: bytes) -> None:
        nonlocal failing
        try:
            client.publish(channel, body)
        except (RedisError, OSError) as exc:
            if not failing:
                logging.getLogger("exporter.demo").warning("could not publish demo events: %s", exc)
            failing = True
        else:
            failing = False

    return publish


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
