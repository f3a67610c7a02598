"""Does history slow the intake down? (issue: foundation)

The intake reads each batch's group states, waiting messages and thread references. Read by the wrong column, those
reads scan whole tables, and the notifier gets slower every day it runs. This measures the commit of a lone webhook
(the intake's whole transaction, SQLite, synchronous=FULL) into an empty store and into one holding N old
notifications, sent messages and group states, in the same process, and prints the ratio; 1.0 means history costs
nothing.

    make bench-history           # or: .venv/bin/python bench/history.py --old 200000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from notifier.alertmanager import decode_payload  # noqa: E402
from notifier.config import load_settings_from_mapping  # noqa: E402
from notifier.runtime import Runtime  # noqa: E402
from tests.helpers import fixture_json  # noqa: E402


def fill(db: Path, n: int, at: float = 0.0, payload: str = "{}") -> None:
    """n notifications received at `at`, each with its sent message and its group's state, as months of operation
    leave them (also used by bench/prune.py)."""
    c = sqlite3.connect(db)
    c.executemany(
        "INSERT INTO notifications (id, received_at, am_receiver, group_key, status, alert_count, redelivery_key,"
        " payload) VALUES (?, ?, 'am', 'g', 'firing', 2, ?, ?)",
        ((f"N{i:012d}", at, f"k{i}", payload) for i in range(n)),
    )
    c.executemany(
        "INSERT INTO deliveries (id, notification_id, receiver, target, channel, group_key, group_hash, state, kind,"
        " silent, change, attempts, parts_sent, created_at, updated_at, next_attempt_at)"
        " VALUES (?, ?, 'sink', 'sink/log/0', 'log', 'g', ?, 'sent', 'alert', 0, '{}', 1, 1, ?, ?, ?)",
        ((f"D{i:012d}", f"N{i:012d}", f"{i:064x}", at, at, at) for i in range(n)),
    )
    c.executemany("INSERT INTO group_state VALUES ('sink', ?, 'g', '{}', ?)", ((f"{i:064x}", at) for i in range(n)))
    c.commit()
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the fill's own log is not the intake's to copy
    c.close()


async def commit_one(rt: Runtime, i: int) -> float:
    """Seconds from submitting the 2-alert webhook as group `i` to its durable commit (also bench/prune.py)."""
    body = fixture_json("01-critical-firing-two-alerts.json")
    body["groupKey"] = f'{{}}:{{bench="{i}"}}'
    raw = json.dumps(body).encode()
    job = rt.intake.prepare(decode_payload(raw), raw)
    t0 = time.perf_counter()
    await rt.store.run_batched(rt.intake_batch, job)
    return time.perf_counter() - t0


def pct(v: list[float], q: float) -> float:
    """The q-quantile of sorted seconds, in ms."""
    return v[min(len(v) - 1, int(q * len(v)))] * 1000


async def measure(workdir: Path, old: int, webhooks: int) -> list[float]:
    db = workdir / f"history-{old}.db"
    settings = load_settings_from_mapping(
        {
            "storage": {"url": f"sqlite:///{db}"},
            "receivers": [{"name": "sink", "log": [{"stream": "stdout"}]}],
            "routes": {"receiver": "sink"},
        },
        source="bench",
        env={},
    )
    rt = Runtime.build(settings)
    await rt.store.migrate()
    fill(db, old)
    times = [await commit_one(rt, i) for i in range(webhooks)]
    await rt.store.dispose()
    return sorted(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--old", type=int, default=200_000, help="old sent messages and group states in the store")
    ap.add_argument("--webhooks", type=int, default=400)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs (the tests do)")
    a = ap.parse_args()
    if a.quick:
        vars(a).update({"old": 2_000, "webhooks": 50})
    workdir = Path(tempfile.mkdtemp(prefix="bench-history-"))
    try:
        empty = asyncio.run(measure(workdir, 0, a.webhooks))
        full = asyncio.run(measure(workdir, a.old, a.webhooks))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    p = pct
    print(f"lone webhook, intake transaction (ms)   {'p50':>7} {'p99':>7}")
    print(f"{'empty store':40} {p(empty, 0.5):7.2f} {p(empty, 0.99):7.2f}")
    print(f"{f'{a.old:,} old messages and groups':40} {p(full, 0.5):7.2f} {p(full, 0.99):7.2f}")
    r50, r99 = p(full, 0.5) / p(empty, 0.5), p(full, 0.99) / p(empty, 0.99)
    print(f"ratio (with history / empty): p50 {r50:.2f}, p99 {r99:.2f}")


if __name__ == "__main__":
    main()
