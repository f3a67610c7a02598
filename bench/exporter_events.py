"""Exporter memory and scrape time against the number of exchange-API events it has seen.

One `bot-exporter` process (demo database, `--redis-url` to a redis-server of its own) receives exchange-API events
over real Redis pub/sub, as TRADERAGENT publishes them: 10 bots x 5 endpoints, each event with a latency. After 1,000
events and again after 1,000,000 it is measured: its resident memory (VmRSS) and the p50 of 50 scrapes of /metrics.
Both should stay flat (ratios near 1): the latency histogram keeps fixed buckets, whatever it counted.

    .venv/bin/python bench/exporter_events.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import free_port  # noqa: E402

BOTS = [f"bot-{i}" for i in range(10)]
ENDPOINTS = ["fetch_ticker", "create_order", "cancel_order", "fetch_order", "fetch_balance"]
BATCH = 5_000  # events per pipeline; then the bench waits for the exporter to catch up (pub/sub buffers are finite)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def events_seen(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('bot_exporter_events_total{event_type="order_placed"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def scrape_p50(client: httpx.Client, n: int = 50) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        assert client.get("/metrics").status_code == 200
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def publish(r: redis.Redis, start: int, count: int, rng: random.Random) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(start, start + count):
        bot = BOTS[i % len(BOTS)]
        body = {
            "event_type": "order_placed",
            "bot_name": bot,
            "timestamp": "2026-11-30T12:00:00+00:00",
            "data": {"endpoint": ENDPOINTS[i % len(ENDPOINTS)], "latency_ms": round(rng.expovariate(1 / 150), 1)},
        }
        pipe.publish(f"trading_events:{bot}", json.dumps(body))
    pipe.execute()


def feed(r: redis.Redis, client: httpx.Client, upto: int, sent: int, rng: random.Random) -> int:
    while sent < upto:
        n = min(BATCH, upto - sent)
        publish(r, sent, n, rng)
        sent += n
        deadline = time.monotonic() + 60
        while events_seen(client) < sent:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the exporter saw {events_seen(client):.0f} of {sent} events")
            time.sleep(0.05)
    return sent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs (the tests do)")
    args = ap.parse_args()
    if args.quick:
        vars(args).update({"events": 5_000})
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is needed (apt-get install redis-server)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-exporter-events-"))
    redis_port, port = free_port(), free_port()
    redis_proc = subprocess.Popen(
        [binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{redis_port}/0"
    exporter = subprocess.Popen(
        [
            *(sys.executable, "-m", "exporter", "--demo", "--demo-interval", "3600", "--redis-url", url),
            *("--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp / "exporter"), "--cache-ttl", "5"),
        ],
        stdout=(tmp / "exporter.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    rng = random.Random(1)
    try:
        r = redis.Redis.from_url(url)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if 'source="redis"} 1.0' in client.get("/metrics").text:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the exporter did not subscribe; see {tmp / 'exporter.log'}")
                time.sleep(0.2)
            sent = feed(r, client, 1_000, 0, rng)
            rss_small, scrape_small = rss_mib(exporter.pid), scrape_p50(client)
            started = time.perf_counter()
            sent = feed(r, client, args.events, sent, rng)
            took = time.perf_counter() - started
            rss_big, scrape_big = rss_mib(exporter.pid), scrape_p50(client)
    finally:
        exporter.terminate()
        exporter.wait(30)
        redis_proc.terminate()
        redis_proc.wait(30)
    print(f"{len(BOTS)} bots x {len(ENDPOINTS)} endpoints; {sent - 1000:,} events fed in {took:.0f} s")
    print(f"after {1_000:>9,} events: RSS {rss_small:6.1f} MiB, scrape p50 {scrape_small:6.2f} ms")
    print(f"after {sent:>9,} events: RSS {rss_big:6.1f} MiB, scrape p50 {scrape_big:6.2f} ms")
    print(f"ratio: RSS {rss_big / rss_small:.2f}, scrape p50 {scrape_big / scrape_small:.2f} (flat: near 1)")


if __name__ == "__main__":
    main()
