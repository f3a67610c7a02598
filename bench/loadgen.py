"""A closed-loop HTTP load generator (aiohttp), run as its own process: N workers post bodies for D seconds.

A body may hold the marker @@SEQ@@, which each request replaces with its own sequence number.

Prints one JSON line: requests, errors, status counts, answers marked duplicate, requests/s, p50/p99 latency in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import aiohttp

UNIQUE = b"@@SEQ@@"  # a body's marker, replaced by the request's sequence number (same length, so same size)


async def run(
    url: str, bodies: list[bytes], concurrency: int, duration: float, token: str, seq_start: int = 0
) -> dict[str, object]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    duplicates = 0  # answers that say the body was a redelivery of one already stored
    counter = 0
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal counter, errors, duplicates
            while time.perf_counter() < deadline:
                body = bodies[counter % len(bodies)]
                if UNIQUE in body:  # every request a distinct notification, however many the run sends
                    body = body.replace(UNIQUE, b"%07d" % ((seq_start + counter) % 10_000_000))
                counter += 1
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        data = await resp.read()
                        duplicates += b'"duplicate":true' in data
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                except aiohttp.ClientError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {
        "requests": len(latencies),
        "errors": errors,
        "statuses": statuses,
        "duplicates": duplicates,
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--bodies", required=True, help="a JSON file: a list of request bodies")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--token", default="bench")
    ap.add_argument("--seq-start", type=int, default=0, help="first number for @@SEQ@@; runs must not overlap")
    a = ap.parse_args()
    bodies = [json.dumps(b).encode() for b in json.loads(Path(a.bodies).read_text())]
    print(json.dumps(asyncio.run(run(a.url, bodies, a.concurrency, a.duration, a.token, a.seq_start))))


if __name__ == "__main__":
    main()
