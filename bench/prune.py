"""Does housekeeping hold up the intake? (issue: foundation)

Housekeeping deletes what is older than the retention in chunks, each its own transaction through the store's one
writer, on the event loop. This posts a webhook every 2 ms into the intake (the whole transaction, SQLite,
synchronous=FULL) and measures each one's commit, first alone, then while housekeeping deletes N old messages,
notifications and group states, in the same process; it prints p50, p99 and the worst, and the ratios.

    make bench-prune             # or: .venv/bin/python bench/prune.py --old 50000
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.history import commit_one, fill, pct  # noqa: E402
from notifier.app import tune_interpreter  # noqa: E402
from notifier.config import load_settings_from_mapping  # noqa: E402
from notifier.runtime import Runtime  # noqa: E402
from tests.helpers import fixture_bytes  # noqa: E402

PACE = 0.002  # seconds between webhooks


async def measure(workdir: Path, old: int, prune: bool) -> tuple[list[float], float, int]:
    db = workdir / f"prune-{int(prune)}.db"
    settings = load_settings_from_mapping(
        {
            "storage": {"url": f"sqlite:///{db}", "retention": "30d"},
            "receivers": [{"name": "sink", "log": [{"stream": "stdout"}]}, {"name": "none"}],
            "routes": {"receiver": "none"},
        },
        source="bench",
        env={},
    )
    rt = Runtime.build(settings)
    await rt.store.migrate()
    fill(db, old, time.time() - 40 * 86400, fixture_bytes("01-critical-firing-two-alerts.json").decode())
    times: list[float] = []
    done = asyncio.Event()
    pruned = 0
    took = 0.0

    async def housekeeping() -> None:
        nonlocal pruned, took
        t0 = time.perf_counter()
        pruned = sum((await rt.housekeeper.prune()).values())
        took = time.perf_counter() - t0
        done.set()

    async def one(i: int) -> None:
        times.append(await commit_one(rt, i))

    await one(-1)  # warm: the first transaction compiles the statements
    tune_interpreter()  # as `notifier serve` does once started
    times.clear()
    task = asyncio.create_task(housekeeping()) if prune else None
    pending = []
    i = 0
    started = time.perf_counter()
    # while housekeeping runs (or, alone, for as long as it took in the other run)
    while (task is not None and not done.is_set()) or (task is None and time.perf_counter() - started < 1.5):
        pending.append(asyncio.create_task(one(i)))
        i += 1
        await asyncio.sleep(PACE)
    await asyncio.gather(*pending)
    if task is not None:
        await task
    await rt.store.dispose()
    return sorted(times), took, pruned


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--old", type=int, default=50_000, help="old messages, notifications and group states")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs (the tests do)")
    a = ap.parse_args()
    if a.quick:
        vars(a).update({"old": 2_000})
    workdir = Path(tempfile.mkdtemp(prefix="bench-prune-"))
    try:
        alone, _, _ = asyncio.run(measure(workdir, a.old, prune=False))
        during, took, pruned = asyncio.run(measure(workdir, a.old, prune=True))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    p = pct
    print(f"housekeeping deleted {pruned:,} rows in {took:.2f} s")
    print(f"webhook commit every {PACE * 1000:.0f} ms (ms)       {'p50':>7} {'p99':>7} {'max':>7} {'count':>7}")
    for name, v in (("alone", alone), ("while housekeeping prunes", during)):
        print(f"{name:36} {p(v, 0.5):7.2f} {p(v, 0.99):7.2f} {v[-1] * 1000:7.2f} {len(v):7}")
    print(
        f"ratio (during / alone): p50 {p(during, 0.5) / p(alone, 0.5):.2f}, p99 {p(during, 0.99) / p(alone, 0.99):.2f},"
        f" max {during[-1] / alone[-1]:.2f}"
    )


if __name__ == "__main__":
    main()
