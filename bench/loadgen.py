"""A closed-loop HTTP/1.1 load generator, run as its own process: N keep-alive connections each post one body,
wait for the whole answer, post the next, for D seconds.

It speaks just enough HTTP/1.1 for the notifier (answers with Content-Length) on asyncio protocols, with uvloop
when it is installed. On a 2-core machine the load generator shares the CPU with the server it measures: an
aiohttp client spent about as much CPU per request as the notifier itself, so the server was starved of half the
machine and the endpoint that needs less work was held back most. This one spends a small fraction of that.

A body may hold the marker @@SEQ@@, which each request replaces with its own sequence number (7 digits, so every
request of a body has the same length).

Prints one JSON line: requests, errors, status counts, answers marked duplicate, requests/s, p50/p99 latency in ms,
and the CPU seconds this process used.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import resource
import time
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

UNIQUE = b"@@SEQ@@"  # a body's marker, replaced by the request's sequence number (same length, so same size)
_HEADER_END = b"\r\n\r\n"


class _Run:
    """What every connection of one run shares: the requests to send and the tallies."""

    def __init__(self, url: str, bodies: list[bytes], token: str, seq_start: int, deadline: float) -> None:
        u = urlsplit(url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 80
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        self.requests: list[tuple[bytes, list[bytes]]] = []
        for body in bodies:
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            self.requests.append((head, body.split(UNIQUE)))
        self.seq = seq_start
        self.counter = 0
        self.deadline = deadline
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.duplicates = 0  # answers that say the body was a redelivery of one already stored

    def next_request(self) -> bytes:
        head, parts = self.requests[self.counter % len(self.requests)]
        n = b"%07d" % ((self.seq + self.counter) % 10_000_000)
        self.counter += 1
        return head + n.join(parts)  # every request a distinct notification, however many the run sends


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request in flight at a time."""

    def __init__(self, run: _Run, done: asyncio.Future[None]) -> None:
        self.run = run
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.sent_at = 0.0
        self.answered = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if time.perf_counter() >= self.run.deadline:
            self.transport.close()
            return
        self.answered = False
        self.sent_at = time.perf_counter()
        self.transport.write(self.run.next_request())

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(_HEADER_END)
        if end < 0:
            return
        head = self.buf[:end].lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:  # the notifier always answers with a length; anything else is counted and the connection ends
            self.run.errors += 1
            self.answered = True
            self.buf = b""
            assert self.transport is not None
            self.transport.close()
            return
        eol = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : eol if eol > 0 else len(head)])
        total = end + 4 + length
        if len(self.buf) < total:
            return
        body = self.buf[end + 4 : total]
        status = int(self.buf[9:12])
        self.buf = self.buf[total:]
        run = self.run
        run.latencies.append(time.perf_counter() - self.sent_at)
        run.statuses[status] = run.statuses.get(status, 0) + 1
        run.duplicates += b'"duplicate":true' in body
        self.answered = True
        if b"\r\nconnection: close" in head:
            assert self.transport is not None
            self.transport.close()
            return
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered:
            self.run.errors += 1
        if not self.done.done():
            self.done.set_result(None)


async def _client(run: _Run) -> None:
    """One connection after the other until the deadline (a server that closes one gets a new one)."""
    loop = asyncio.get_running_loop()
    while time.perf_counter() < run.deadline:
        done: asyncio.Future[None] = loop.create_future()
        try:
            await loop.create_connection(functools.partial(_Connection, run, done), run.host, run.port)
        except OSError:
            run.errors += 1
            await asyncio.sleep(0.05)
            continue
        await done


async def run(
    url: str, bodies: list[bytes], concurrency: int, duration: float, token: str, seq_start: int = 0
) -> dict[str, object]:
    started = time.perf_counter()
    r = _Run(url, bodies, token, seq_start, started + duration)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(_client(r) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    latencies = sorted(r.latencies)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {
        "requests": len(latencies),
        "errors": r.errors,
        "statuses": r.statuses,
        "duplicates": r.duplicates,
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "cpu_s": round(cpu_after.ru_utime + cpu_after.ru_stime - cpu.ru_utime - cpu.ru_stime, 2),
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
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(a.url, bodies, a.concurrency, a.duration, a.token, a.seq_start))))


if __name__ == "__main__":
    main()
