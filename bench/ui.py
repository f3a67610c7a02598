"""The timeline's cost and the web view's speed (issue: "why did I (not) get this alert?").

(a) The web view with 10,000 alert groups and 1,000,000 recorded events in a SQLite store (or --store-url): the
    overview and a group's timeline, rendered in process through the ASGI app, p50 and p99 over many requests
    (target: p99 < 100 ms), and /healthz in the same process as the baseline.
(b) The intake's throughput with the timeline on against off: two `notifier serve` processes, one of each, loaded
    in alternating rounds by bench/loadgen.py (2-alert payloads, distinct notifications); the ratio on/off per
    round (target >= 0.9).

    make bench-ui   # or: .venv/bin/python bench/ui.py [--groups 10000 --events 1000000] [--skip-intake]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import median, quantiles
from typing import Any

import httpx
import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.intake import bodies, load, start_server  # noqa: E402
from notifier.app import create_app  # noqa: E402
from notifier.config import load_settings_from_mapping  # noqa: E402
from notifier.runtime import Runtime  # noqa: E402
from notifier.store.tables import alert_groups, group_state, timeline  # noqa: E402
from notifier.ui.auth import hash_password  # noqa: E402
from tests.helpers import free_port  # noqa: E402

PASSWORD = "bench-password"
SEVERITIES = ("critical", "warning", "info")


def fill(conn: Any, groups: int, events: int) -> list[str]:
    """`groups` firing groups and `events` timeline rows spread over them (a busy month's history)."""
    now = time.time()
    rng = random.Random(1)
    hashes = [hashlib.sha256(f"g{i}".encode()).hexdigest() for i in range(groups)]
    conn.execute(
        alert_groups.insert(),
        [
            {
                "group_hash": h,
                "am_receiver": "notifier",
                "group_key": f'{{}}:{{alertname="Alert{i % 300}", bot="bot-{i}"}}',
                "labels": msgspec.json.encode({"alertname": f"Alert{i % 300}", "bot": f"bot-{i}"}).decode(),
                "title": f"Alert{i % 300}",
                "severity": SEVERITIES[i % 3],
                "firing": 1 + i % 4,
                "firing_since": now - rng.uniform(60, 30 * 86400),
                "updated_at": now - rng.uniform(0, 3600),
            }
            for i, h in enumerate(hashes)
        ],
    )
    conn.execute(
        group_state.insert(),
        [
            {
                "receiver": "oncall",
                "group_hash": h,
                "group_key": f"g{i}",
                "alerts": '{"a":"firing"}',
                "last_sent_at": now,
            }
            for i, h in enumerate(hashes)
        ],
    )
    per = events // groups
    outcomes = (("webhook", "accepted"), ("decision", "queued"), ("attempt", "sent"), ("decision", "unchanged"))
    batch: list[dict[str, Any]] = []
    n = 0
    for i, h in enumerate(hashes):
        key = f'{{}}:{{alertname="Alert{i % 300}", bot="bot-{i}"}}'
        for j in range(per):
            kind, outcome = outcomes[j % len(outcomes)]
            n += 1
            batch.append(
                {
                    "id": f"{n:026d}",
                    "at": now - (per - j) * 600.0,
                    "group_hash": h,
                    "group_key": key,
                    "kind": kind,
                    "subject": "oncall",
                    "outcome": outcome,
                    "text": f"{outcome} for oncall/telegram/0: 1 new (route routes.routes[{j % 5}])",
                    "notification_id": None,
                    "delivery_id": None,
                }
            )
            if len(batch) == 20_000:
                conn.execute(timeline.insert(), batch)
                batch = []
    if batch:
        conn.execute(timeline.insert(), batch)
    return hashes


def stats(samples: list[float]) -> tuple[float, float]:
    ms = [s * 1000 for s in samples]
    return median(ms), quantiles(ms, n=100)[98]


async def pages(url: str, groups: int, events: int, requests: int) -> None:
    settings = load_settings_from_mapping(
        {
            "storage": {"url": url},
            "receivers": [{"name": "oncall", "log": [{}]}],
            "routes": {"receiver": "oncall"},
            "ui": {"users": [{"name": "bench", "password_hash": hash_password(PASSWORD)}]},
        },
        env={},
    )
    rt = Runtime.build(settings)
    app = create_app(settings, runtime=rt)
    await rt.start(worker=False)
    started = time.perf_counter()
    hashes = await rt.store.run_in_transaction(lambda conn: fill(conn, groups, events))
    if rt.store.dialect == "postgresql":
        async with rt.store.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")
    took = time.perf_counter() - started
    print(f"store filled: {groups} groups, {len(hashes) * (events // groups)} events in {took:.0f}s")
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # Litestar's ASGI types are narrower than httpx's
    async with httpx.AsyncClient(transport=transport, base_url="http://notifier", timeout=60) as client:
        r = await client.post("/ui/login", data={"user": "bench", "password": PASSWORD})
        assert r.status_code == 303, r.text
        client.cookies.set("notifier_session", r.cookies["notifier_session"], path="/ui")
        rng = random.Random(2)
        timings: dict[str, list[float]] = {"healthz": [], "overview": [], "timeline": []}
        for _ in range(3):  # warm
            await client.get("/ui")
            await client.get(f"/ui/groups/{rng.choice(hashes)}")
        for i in range(requests):
            for name, path in (
                ("healthz", "/healthz"),
                ("overview", "/ui"),
                ("timeline", f"/ui/groups/{rng.choice(hashes)}"),
            ):
                t = time.perf_counter()
                r = await client.get(path)
                timings[name].append(time.perf_counter() - t)
                assert r.status_code == 200, (path, r.status_code)
            if i == 0:
                size = len((await client.get("/ui")).content)
                print(f"overview page: {size // 1024} KiB")
    await rt.stop()
    _, base99 = stats(timings["healthz"])
    print(f"{'page':10} {'p50 ms':>8} {'p99 ms':>8}   p99 / healthz p99   (target: p99 < 100 ms)")
    for name, samples in timings.items():
        p50, p99 = stats(samples)
        print(f"{name:10} {p50:8.1f} {p99:8.1f}   {p99 / base99:6.1f}x")


def intake(rounds: int, duration: float, concurrency: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    body = workdir / "2-alert.json"
    body.write_text(json.dumps(bodies("2-alert", 2000)))
    procs = []
    urls = {}
    try:
        for name, on in (("on", "true"), ("off", "false")):
            port = free_port()
            cfg = workdir / f"{name}.yml"
            cfg.write_text(
                f"server: {{listen: '127.0.0.1:{port}', auth: {{bearer_token: bench}}}}\n"
                f"storage: {{url: 'sqlite:///{workdir}/{name}.db', timeline: {on}}}\n"
                "receivers: [{name: none}]\nroutes: {receiver: none}\n"
            )
            procs.append(start_server("uvicorn", cfg, port, workdir))
            urls[name] = f"http://127.0.0.1:{port}/webhook/alertmanager"
        seq = 0
        for url in urls.values():
            load(url, body, concurrency, 1.0, seq_start=seq)  # warm
            seq += 200_000
        runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
        for i in range(rounds):
            for name in ("on", "off") if i % 2 == 0 else ("off", "on"):
                seq += 200_000
                runs[name].append(load(urls[name], body, concurrency, duration, seq_start=seq))
        ratios = [a["rps"] / b["rps"] for a, b in zip(runs["on"], runs["off"], strict=True)]
        for name, rs in runs.items():
            print(
                f"timeline {name:3}  {median([r['rps'] for r in rs]):7.0f} req/s  p50 "
                f"{median([r['p50_ms'] for r in rs]):5.1f} ms  p99 {median([r['p99_ms'] for r in rs]):5.1f} ms"
            )
        print("on/off per round: " + " ".join(f"{x:.2f}" for x in ratios))
        print(f"intake with the timeline on / off = {median(ratios):.2f} (median of rounds; target >= 0.9)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=200, help="requests per page")
    ap.add_argument("--store-url", help="default: a SQLite file in a temporary folder")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--skip-intake", action="store_true")
    ap.add_argument("--skip-pages", action="store_true")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs (the tests do)")
    a = ap.parse_args()
    if a.quick:
        vars(a).update({"groups": 100, "events": 2_000, "requests": 10, "rounds": 1, "duration": 0.5})
    if not a.skip_pages:
        tmp = Path(tempfile.mkdtemp(prefix="bench-ui-pages-"))
        try:
            asyncio.run(pages(a.store_url or f"sqlite:///{tmp}/notifier.db", a.groups, a.events, a.requests))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if not a.skip_intake:
        intake(a.rounds, a.duration, a.concurrency)


if __name__ == "__main__":
    main()
