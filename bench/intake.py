"""Intake benchmark (issue: foundation).

One notifier process as in production; load from another process (bench/loadgen.py, a lean HTTP/1.1 client, so
that on a 2-core machine the load costs the server little CPU). For the captured 2-alert payload and a 100-alert
group, it measures (a) POST /webhook/alertmanager with durable SQLite storage (WAL, synchronous=FULL, group
commit) routed to a receiver without targets, so that intake alone is measured, and (b) POST
/webhook/alertmanager/validate, which only validates the same payload -- in the same server process, in
alternating rounds (a, b, then b, a, ...), so that both see the same machine. A "+deliver" server routes to a `log`
target, so that it also renders and delivers every message; it too is compared with its own validate rounds.
Every request of (a) is a distinct notification of a new group (no duplicate short-cuts).

It prints requests/s, p50 and p99 (medians over the rounds) and the ratio a/b per round, for each concurrency
(connections kept busy by the load generator), under uvicorn (httptools, uvloop) and granian.

    make bench-intake            # or: .venv/bin/python bench/intake.py --rounds 7 --duration 2 --concurrency 32,128
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import fixture_json, free_port, make_group  # noqa: E402


def bodies(kind: str, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        b = fixture_json("01-critical-firing-two-alerts.json") if kind == "2-alert" else make_group(100)
        b["groupKey"] = f'{{}}:{{bench="{kind}-{i}-@@SEQ@@"}}'
        for a in b["alerts"]:
            a["fingerprint"] = f"{i:08x}{a['fingerprint'][8:]}"
        out.append(b)
    return out


def start_server(kind: str, cfg: Path, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFIER_CONFIG": str(cfg), "PYTHONPATH": str(ROOT)}
    log = (workdir / f"{kind}.log").open("wb")
    if kind == "uvicorn":
        cmd = [sys.executable, "-m", "notifier", "serve", "--config", str(cfg)]
    else:
        cmd = [
            str(Path(sys.executable).parent / "granian"),
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--no-ws",
            "--log-level",
            "warning",
            "--factory",
            "bench.asgi_app:make_app",
        ]
    p = subprocess.Popen(cmd, env=env, cwd=str(workdir), stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return p
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    p.kill()
    raise SystemExit(f"{kind} did not start: {(workdir / f'{kind}.log').read_text()[-2000:]}")


def load(url: str, body_file: Path, concurrency: int, duration: float, seq_start: int = 0) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "loadgen.py"),
            "--url",
            url,
            "--bodies",
            str(body_file),
            "--concurrency",
            str(concurrency),
            "--duration",
            str(duration),
            "--seq-start",
            str(seq_start),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    # Short rounds, many of them: this machine's speed drifts by tens of percent within seconds, and each round's
    # ratio compares two runs a few seconds apart.
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per measured run")
    ap.add_argument("--rounds", type=int, default=7, help="alternating validate/webhook rounds per concurrency")
    ap.add_argument("--concurrency", default="32,128", help="comma-separated connection counts")
    ap.add_argument("--servers", default="uvicorn,granian")
    ap.add_argument("--payloads", default="2-alert,100-alert")
    ap.add_argument("--no-deliver", action="store_true", help="leave out the +deliver server")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs (the tests do)")
    a = ap.parse_args()
    if a.quick:
        vars(a).update({"duration": 0.5, "rounds": 1, "concurrency": "8", "servers": "uvicorn", "payloads": "2-alert"})
    levels = [int(c) for c in a.concurrency.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    files = {}
    for kind in a.payloads.split(","):
        f = workdir / f"{kind}.json"
        f.write_text(json.dumps(bodies(kind, 2000 if kind == "2-alert" else 200)))
        files[kind] = f
    print(
        f"{'server':8} {'payload':10} {'conns':>5} {'endpoint':9} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}"
        "   a/b per round"
    )
    summary = []
    try:
        for server in a.servers.split(","):
            if server == "granian" and not shutil.which("granian", path=str(Path(sys.executable).parent)):
                print("granian not installed; skipped")
                continue
            for kind, f in files.items():
                for endpoint, receiver in (("durable", "none"), ("+deliver", "sink"))[: 1 if a.no_deliver else 2]:
                    db = workdir / f"{server}-{kind}-{receiver}.db"
                    port = free_port()
                    cfg = workdir / f"{server}.yml"
                    cfg.write_text(
                        f"server: {{listen: '127.0.0.1:{port}', auth: {{bearer_token: bench}}}}\n"
                        f"storage: {{url: 'sqlite:///{db}'}}\n"
                        "receivers: [{name: sink, log: [{stream: stdout}]}, {name: none}]\n"
                        f"routes: {{receiver: {receiver}}}\n"
                    )
                    base = f"http://127.0.0.1:{port}/webhook/alertmanager"
                    proc = start_server(server, cfg, port, workdir)
                    try:
                        # each load's requests numbered from its own start, 200,000 apart: every request to this
                        # server a distinct notification (the 7-digit numbers never wrap within one server)
                        seq = 0
                        load(base + "/validate", f, levels[0], 1.0)  # warm-up
                        load(base, f, levels[0], 1.0, seq_start=seq)
                        for level in levels:
                            runs: dict[str, list[dict[str, Any]]] = {"validate": [], endpoint: []}
                            for i in range(a.rounds):
                                order = ("validate", endpoint) if i % 2 == 0 else (endpoint, "validate")
                                for which in order:
                                    url = base + "/validate" if which == "validate" else base
                                    seq += 200_000
                                    runs[which].append(load(url, f, level, a.duration, seq_start=seq))
                            ratios = [
                                d["rps"] / v["rps"] for d, v in zip(runs[endpoint], runs["validate"], strict=True)
                            ]
                            for which, rs in runs.items():
                                bad = {k: n for r in rs for k, n in r["statuses"].items() if k[0] != "2"}
                                dups = sum(r["duplicates"] for r in rs)
                                rps, p50, p99 = (median([r[k] for r in rs]) for k in ("rps", "p50_ms", "p99_ms"))
                                print(
                                    f"{server:8} {kind:10} {level:5} {which:9} {rps:7.0f} {p50:7.1f} {p99:7.1f}"
                                    + ("   " + " ".join(f"{x:.2f}" for x in ratios) if which != "validate" else "")
                                    + (f"   non-2xx {bad}" if bad else "")
                                    + (f"   duplicates {dups}" if dups else "")
                                )
                            summary.append((server, kind, level, endpoint, median(ratios)))
                    finally:
                        proc.terminate()
                        proc.wait(30)
        print()
        for server, kind, level, endpoint, ratio in summary:
            what = "durable/validate-only" if endpoint == "durable" else "durable+delivered/validate-only"
            print(f"{server:8} {kind:10} {level:4} connections  a/b {what} = {ratio:.2f} (median of rounds)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
