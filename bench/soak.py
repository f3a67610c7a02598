"""Chaos soak with an exact ledger (issue: proven over time).

Real parts: two Alertmanager 0.25 peers in a gossip cluster on loopback, each posting every notification to all
three `notifier serve` replicas (so the HA copies are real, and a dead replica is covered by the others); the
replicas share a fresh PostgreSQL database reached through a TCP proxy that the soak can cut; four Telegram
receivers (one chat each) on the strict fake Bot API. An alert generator posts to both peers' `/api/v2/alerts` every
two seconds, as Prometheus does, with groups that fire and resolve on a seeded schedule, and a Watchdog.

Faults and events, on a schedule drawn from `--seed` and printed: `kill -9` of a replica and its restart,
PostgreSQL cut (every connection closed, new ones refused: a fast restart, and an outage of 60 s), an Alertmanager
peer killed and restarted, the Bot API answering 429 with retry_after, 5xx, taking 10 s per call, and taking
messages but resetting the connection before its answer; Slack 429, SMTP 451; a storm (48 new groups at once); quiet
hours of team2 that open and close during the run (runs of 4 minutes or more); and someone acknowledging team3's
groups from the chat (Ack pressed, heard by the replica that polls the Bot API) while they escalate.

The ledger: the generator records every change of every alert. Each receiver's template prints one line per alert
(`SOAK <alert> <status>`), so what each chat was told is read back from the fake. A change is told when a message
at or after it shows it; **lost** is a change never told; **went back** is a message showing an alert firing after a
message had shown it resolved, with no new episode of it begun (a late copy that took a group back); a
**duplicate** is a message repeating the previous message of its group word for word, legitimate only when a
replica was killed while it could have been on the wire, or the provider took it and the connection was reset
before its answer. It exits non-zero on any loss, any went back, any unexplained duplicate, a group whose last
message is not its final state, an escalation page missed, early, or sent while the group was acknowledged, or a
press left unanswered.

    make soak                                  # 5 minutes
    .venv/bin/python bench/soak.py --minutes 30 --seed 7 --report soak.json

This file runs the soak; its rooms are in bench/soak_parts/: parts.py (the fake providers, a replica, an
Alertmanager peer), load.py (the generator and the person pressing Ack), faults.py (the schedule, and what
happened), ledger.py (what was told against what changed), common.py (the run's constants and templates).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.soak_parts.common import ESCALATE_AFTER, EVAL  # noqa: E402
from bench.soak_parts.faults import Happened, quiet_window, schedule  # noqa: E402
from bench.soak_parts.ledger import escalations, ledger, outbox_empty, summaries, told, watchdog_alarms  # noqa: E402
from bench.soak_parts.load import Generator, Presser  # noqa: E402
from bench.soak_parts.parts import Peer, Providers, Replica  # noqa: E402
from tests.fakes.tcp import TcpProxy  # noqa: E402
from tests.helpers import PG_ADMIN_URL, free_port  # noqa: E402

# -- the run ----------------------------------------------------------------------------------------------------------


async def fresh_database() -> str:
    name = f"soak_{os.getpid()}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    return name


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.close()


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    seconds = args.minutes * 60
    faults = schedule(rng, seconds, args.quick)
    print(f"chaos soak with seed {args.seed}, {seconds:.0f}s, {args.groups} groups; faults:")
    for f in faults:
        print("  ", f)
    db = asyncio.run(fresh_database())
    fakes = Providers.start()
    tg, on_loop = fakes.tg, fakes.on_loop
    proxy = TcpProxy(5432)
    on_loop(proxy.start())
    pg_url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{db}"
    ports = [(free_port(), free_port()) for _ in range(2)]
    quiet = quiet_window(time.time() + 60, seconds)  # the replicas and peers take about a minute to start
    am_urls = [f"http://127.0.0.1:{web}" for web, _mesh in ports]
    replicas = [Replica(i, workdir, pg_url, fakes, am_urls, quiet) for i in range(3)]
    peers = [Peer(i, workdir, ports, replicas) for i in range(2)]
    gen = Generator(rng, args.groups, (args.hold_min, args.hold_max), peers)
    try:
        replicas[0].start()
        replicas[0].wait_ready()  # the first one migrates the schema
        for r in replicas[1:]:
            r.start()
        for r in replicas[1:]:
            r.wait_ready()
        for p in peers:
            p.start()
        for p in peers:
            p.wait_ready()
        start = time.time()
        happened = Happened(start, quiet=quiet)
        if quiet is not None:
            print(f"  quiet hours of team2 (email, defer): t+{quiet[0] - start:.0f}s to t+{quiet[1] - start:.0f}s")
        presses = Presser(random.Random(args.seed + 1), tg)
        pg_cut_at = 0.0
        gen.setup(start)
        gen.resolve_all_at(start + seconds * 0.8)
        pending = list(faults)
        restarts: list[tuple[float, Any]] = []  # (when, what to start again)

        while time.time() - start < seconds:
            now = time.time()
            gen.tick(now)
            presses.tick(now)
            while pending and now - start >= pending[0].at:
                f = pending.pop(0)
                print(f"  {now - start:6.0f}s  {f.kind}", flush=True)
                what: Any = {"kill_replica": replicas[f.target % 3], "kill_peer": peers[f.target % 2]}.get(f.kind)
                what = "pg" if f.kind in ("pg_restart", "pg_down") else "tg" if f.kind == "tg_slow" else what
                held = [r for r in restarts if what is not None and r[1] == what]
                if held:  # already down: the fault only holds it down longer
                    restarts.remove(held[0])
                    restarts.append((max(held[0][0], now + f.length), what))
                elif f.kind == "kill_replica":
                    replicas[f.target].kill9()
                    happened.kills.append(now)
                    restarts.append((now + f.length, replicas[f.target]))
                elif f.kind in ("pg_restart", "pg_down"):
                    on_loop(proxy.cut())
                    pg_cut_at = now
                    restarts.append((now + f.length, "pg"))
                elif f.kind == "kill_peer":
                    peers[f.target].kill9()
                    restarts.append((now + f.length, peers[f.target]))
                elif f.kind == "tg_429":
                    tg.loop.call_soon_threadsafe(tg.fake.fail_next, 6, 429, "Too Many Requests: retry after 2", 2)
                    happened.ends.append((f.kind, now))
                elif f.kind == "tg_5xx":
                    tg.loop.call_soon_threadsafe(tg.fake.fail_next, 6, 502, "Bad Gateway")
                    happened.ends.append((f.kind, now))
                elif f.kind == "slack_429":
                    tg.loop.call_soon_threadsafe(fakes.slack.fail_next, 6, 429, 2)
                    happened.ends.append((f.kind, now))
                elif f.kind == "smtp_451":
                    fakes.smtp.handler.fail_with.extend(["451 4.3.0 try again later"] * 4)
                    happened.ends.append((f.kind, now))
                elif f.kind == "tg_slow":
                    tg.fake.delay = 10.0
                    restarts.append((now + f.length, "tg"))
                elif f.kind == "tg_reset":
                    tg.fake.reset_after_taking = 3
                    happened.ends.append((f.kind, now))
                elif f.kind == "storm":
                    gen.burst(now, f.target)
                elif f.kind == "huge":
                    gen.huge(now, f.target, f.length)
            for item in [r for r in restarts if r[0] <= now]:
                restarts.remove(item)
                what = item[1]
                if what == "pg":
                    on_loop(proxy.start())
                    happened.ends.append(("PostgreSQL", now))
                    happened.outages.append((pg_cut_at, now))
                elif what == "tg":
                    tg.fake.delay = 0.0
                    happened.ends.append(("tg_slow", now))
                else:
                    what.start()
                    happened.ends.append((f"{type(what).__name__.lower()} {what.i}", now))
            time.sleep(max(0.0, EVAL - (time.time() - now)))
        for _when, what in restarts:  # the run ended inside a fault: end it
            if what == "pg":
                on_loop(proxy.start())
                happened.outages.append((pg_cut_at, time.time()))
            elif what == "tg":
                tg.fake.delay = 0.0
            else:
                what.start()
        # drain: everything resolved; wait until every change is told (or the drain time runs out)
        deadline = time.time() + args.drain
        while time.time() < deadline:
            gen.tick(time.time())
            result = ledger(gen.changes, told(fakes), happened, summaries(fakes))
            if result["lost"] == 0 and not result["stuck_firing"] and outbox_empty(replicas):
                break
            time.sleep(EVAL)
        time.sleep(3 * EVAL)  # anything still on its way (a duplicate) lands
        happened.resets = list(tg.fake.resets)
        result = ledger(gen.changes, told(fakes), happened, summaries(fakes))
        result["seed"] = args.seed
        result["seconds"] = seconds
        result["faults"] = [str(f) for f in faults]
        result["generator_post_errors"] = gen.errors
        for r in replicas:
            r.stop()
        result["rss_mib"] = {f"replica-{r.i}": [[round(a, 1), round(b, 1)] for a, b in r.rss] for r in replicas}
        result["answered_503"] = sum(r.unavailable for r in replicas)
        result["telegram_429s"] = tg.fake.rate_limited
        result["telegram_resets"] = len(tg.fake.resets)
        result["watchdog_alarms"] = watchdog_alarms(fakes, start)
        result["escalation"] = escalations(gen.changes, fakes, told(fakes), presses.acks, happened)
        result["presses"] = presses.report(tg.fake, start)
        result["messages_sent"] = [[round(m.at - start, 1), m.team, m.text] for m in told(fakes)]
        result["alert_changes"] = [[round(c.at - start, 1), c.alert, c.status] for c in gen.changes]
        result["outages"] = [[round(a - start, 1), round(b - start, 1)] for a, b in happened.outages]
        return result
    finally:  # every part stopped even when one of them fails to stop, and the database dropped
        for stop in [*(r.stop for r in replicas), *(p.stop for p in peers), fakes.stop]:
            try:
                stop()
            except Exception as exc:  # reported; the rest are still stopped
                print(f"stopping: {exc!r}", file=sys.stderr)
        if args.keep is None:
            asyncio.run(drop_database(db))
        else:
            print(f"kept for a post-mortem: the logs in {workdir}, the database {db}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--groups", type=int, default=60)
    ap.add_argument("--hold-min", type=float, default=20.0, help="shortest time an alert stays firing or resolved")
    ap.add_argument("--hold-max", type=float, default=120.0)
    ap.add_argument("--drain", type=float, default=300.0, help="seconds to wait for the outbox to drain at the end")
    ap.add_argument("--report", type=Path, help="write the ledger as JSON here")
    ap.add_argument("--quick", action="store_true", help="about a minute, fewer groups and faults (the tests run it)")
    ap.add_argument("--keep", type=Path, help="keep every process's log here, and the database, for a post-mortem")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped from outside: the processes go with it
    if args.quick:
        args.minutes, args.groups, args.hold_min, args.hold_max, args.drain = 1.0, 12, 12.0, 30.0, 90.0
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run(args, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
            result = run(args, Path(tmp))
    print()
    print(f"{'receiver':10} {'changes':>8} {'told':>8} {'folded':>7} {'lost':>6}")
    for team, row in sorted(result["per_receiver"].items()):
        print(f"{team:10} {row['changes']:8d} {row['told']:8d} {row['folded']:7d} {row['lost']:6d}")
    lat = result["latency_s"]
    print(f"change -> message: p50 {lat['p50']}s, p99 {lat['p99']}s, max {lat['max']}s")
    q = result["deferred_by_quiet_hours"]
    print(f"held by team2's quiet hours, told when they ended: {q['told']} changes, within {q['max_s']}s")
    print(f"recovery after each fault (s): {result['recovery_s']}")
    print(f"RSS MiB per replica life (at ready, at its end): {result['rss_mib']}")
    print(
        f"503s answered to Alertmanager (PostgreSQL away): {result['answered_503']}; "
        f"Bot API 429s: {result['telegram_429s']}; messages taken, then their connection reset: "
        f"{result['telegram_resets']}"
    )
    print(f"WatchdogMissing messages: {result['watchdog_alarms'] or 'none'}")
    esc = result["escalation"]
    print(
        f"escalation (team3 -> ntfy after {ESCALATE_AFTER:.0f}s): {esc['pages']} pages, {esc['expected']} groups that "
        f"had to page, {len(esc['missed'])} missed, {len(esc['early'])} early"
    )
    for key in ("lost_list", "folded_list", "went_back_list", "duplicates_list", "stuck_firing"):
        if result[key]:
            print(f"{key}: {result[key]}")
    for key in ("missed", "early", "after_ack", "resolved_while_away"):
        if esc[key]:
            print(f"escalation {key}: {esc[key]}")
    pr = result["presses"]
    again = f": {pr['press_again']}" if pr["press_again"] else ""
    print(
        f"presses (Ack on team3): {pr['pressed']} pressed, {pr['acknowledged']} acknowledged, "
        f"{len(pr['press_again'])} answered 'press again' (database away){again}"
    )
    if pr["unanswered"]:
        print(f"presses never answered: {pr['unanswered']}")
    unexplained = len(result["duplicates_unexplained"])
    print(
        f"soak: {result['changes']} changes, {result['lost']} lost, {result['folded']} folded, "
        f"{result['duplicates']} duplicates "
        f"({result['duplicates_legitimate']} legitimate), {result['went_back']} went back, "
        f"{len(result['stuck_firing'])} stuck firing, {result['messages']} messages"
    )
    if args.report:
        args.report.write_text(json.dumps(result, indent=2))
    bad = (
        result["lost"]
        or result["went_back"]
        or unexplained
        or result["stuck_firing"]
        or esc["missed"]
        or esc["early"]
        or esc["after_ack"]
        or pr["unanswered"]
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
