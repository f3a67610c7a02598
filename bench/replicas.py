"""Replica scaling benchmark (issue: several replicas).

Intake throughput and delivery drain rate with 1, 2 and 4 notifier replicas on one PostgreSQL, against the single
SQLite process, with the same payloads on the same machine. Load comes from one load-generator process per replica
(bench/loadgen.py, 32 connections in all); every request is a distinct 2-alert notification routed to a `log`
target (stdout to /dev/null), so each also becomes one delivery. Prints requests/s, the drain rate (deliveries
sent per second from the first request until the outbox is empty) and the ratios against SQLite.

    .venv/bin/python bench/replicas.py [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.intake import bodies  # noqa: E402
from tests.helpers import PG_ADMIN_URL, free_port  # noqa: E402

DB = "bench_replicas"


async def reset_pg() -> str:
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {DB}")
    await admin.close()
    return f"postgresql://postgres@127.0.0.1:5432/{DB}"


def start(url: str, workdir: Path, i: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cfg = {
        "server": {"listen": f"127.0.0.1:{port}", "auth": {"bearer_token": "bench"}},
        "storage": {"url": url},
        "receivers": [{"name": "sink", "log": [{}]}],
        "routes": {"receiver": "sink"},
    }
    path = workdir / f"n{i}.yml"
    path.write_text(json.dumps(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "notifier", "serve", "--config", str(path)],
        cwd=str(workdir),
        stdout=subprocess.DEVNULL,
        stderr=(workdir / f"n{i}.log").open("wb"),
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )
    return proc, port


def ready(port: int) -> None:
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"replica on {port} did not start")


def run(label: str, url: str, n: int, duration: float, workdir: Path) -> dict[str, Any]:
    procs = []
    ports = []
    for i in range(n):
        p, port = start(url, workdir, i)
        procs.append(p)
        ports.append(port)
    try:
        for port in ports:
            ready(port)
        files = []
        for i in range(n):  # distinct notifications per replica
            f = workdir / f"{label}-{i}.json"
            bs = bodies("2-alert", 8000)
            for b in bs:
                b["groupKey"] = f"{b['groupKey']}-{label}-{i}"
            f.write_text(json.dumps(bs))
            files.append(f)
        started = time.time()
        gens = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "bench" / "loadgen.py"),
                    "--url",
                    f"http://127.0.0.1:{port}/webhook/alertmanager",
                    "--bodies",
                    str(f),
                    "--concurrency",
                    str(max(1, 32 // n)),
                    "--duration",
                    str(duration),
                    "--token",
                    "bench",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for port, f in zip(ports, files, strict=True)
        ]
        results = [json.loads(g.communicate()[0]) for g in gens]
        accepted = sum(r["statuses"].get("202", 0) for r in results)
        rps = sum(r["rps"] for r in results)
        while True:  # drain: until no replica's outbox has anything waiting
            pending = sum(
                len(
                    httpx.get(
                        f"http://127.0.0.1:{p}/api/v1/deliveries?state=pending&limit=1",
                        headers={"Authorization": "Bearer bench"},
                    ).json()["deliveries"]
                )
                for p in ports
            )
            if not pending or time.time() - started > 300:
                break
            time.sleep(0.2)
        drained = time.time() - started
        return {"label": label, "rps": rps, "accepted": accepted, "drain_rate": accepted / drained}
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs (the tests do)")
    a = ap.parse_args()
    if a.quick:
        vars(a).update({"duration": 1.0})
    workdir = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    rows = [run("sqlite", f"sqlite:///{workdir}/n.db", 1, a.duration, workdir)]
    for n in (1, 2, 4):
        url = await reset_pg()
        rows.append(run(f"pg x{n}", url, n, a.duration, workdir))
    base = rows[0]
    print(f"{'setup':10} {'intake req/s':>13} {'vs SQLite':>10} {'drain msg/s':>12} {'vs SQLite':>10}")
    for r in rows:
        print(
            f"{r['label']:10} {r['rps']:13.0f} {r['rps'] / base['rps']:10.2f} {r['drain_rate']:12.0f} "
            f"{r['drain_rate'] / base['drain_rate']:10.2f}"
        )
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
