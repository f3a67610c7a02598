"""Does history slow the intake down? (issue: foundation)

The intake reads each batch's group states, waiting messages and thread references. Read by the wrong column, those
reads scan whole tables, and the notifier gets slower every day it runs. This measures the commit of a lone webhook
(the intake's whole transaction, SQLite, synchronous=FULL) into an empty store and into one holding N old sent
messages and group states, in the same process, and prints the ratio; 1.0 means history costs nothing.

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

from notifier.api.schema import decode_payload  # noqa: E402
from notifier.runtime import Runtime  # noqa: E402
from notifier.settings import load_settings_from_mapping  # noqa: E402
from tests.helpers import fixture_json  # noqa: E402


def fill(db: Path, n: int) -> None:
    """n sent messages of n distinct groups, and those groups' states, as months of operation leave them."""
    c = sqlite3.connect(db)
    c.execute(
        "INSERT INTO notifications (id, received_at, am_receiver, group_key, status, alert_count, redelivery_key,"
        " payload) VALUES ('N0', 0, 'am', 'g', 'firing', 1, 'k', '{}')"
    )
    c.executemany(
        "INSERT INTO deliveries (id, notification_id, receiver, target, channel, group_key, group_hash, state, kind,"
        " silent, change, attempts, parts_sent, created_at, updated_at, next_attempt_at)"
        " VALUES (?, 'N0', 'sink', 'sink/log/0', 'log', 'g', ?, 'sent', 'alert', 0, '{}', 1, 1, 0, 0, 0)",
        ((f"D{i:012d}", f"{i:064x}") for i in range(n)),
    )
    c.executemany("INSERT INTO group_state VALUES ('sink', ?, 'g', '{}', 0)", ((f"{i:064x}",) for i in range(n)))
    c.commit()
    c.close()


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
    times = []
    for i in range(webhooks):
        body = fixture_json("01-critical-firing-two-alerts.json")
        body["groupKey"] = f'{{}}:{{bench="{i}"}}'
        raw = json.dumps(body).encode()
        job = rt.intake.prepare(decode_payload(raw), raw)
        t0 = time.perf_counter()
        await rt.store.run_batched(rt.intake_batch, job)
        times.append(time.perf_counter() - t0)
    await rt.store.dispose()
    return sorted(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--old", type=int, default=200_000, help="old sent messages and group states in the store")
    ap.add_argument("--webhooks", type=int, default=400)
    a = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-history-"))
    try:
        empty = asyncio.run(measure(workdir, 0, a.webhooks))
        full = asyncio.run(measure(workdir, a.old, a.webhooks))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def p(v: list[float], q: float) -> float:
        return v[min(len(v) - 1, int(q * len(v)))] * 1000

    print(f"lone webhook, intake transaction (ms)   {'p50':>7} {'p99':>7}")
    print(f"{'empty store':40} {p(empty, 0.5):7.2f} {p(empty, 0.99):7.2f}")
    print(f"{f'{a.old:,} old messages and groups':40} {p(full, 0.5):7.2f} {p(full, 0.99):7.2f}")
    r50, r99 = p(full, 0.5) / p(empty, 0.5), p(full, 0.99) / p(empty, 0.99)
    print(f"ratio (with history / empty): p50 {r50:.2f}, p99 {r99:.2f}")


if __name__ == "__main__":
    main()
