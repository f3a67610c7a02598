"""Intake benchmark (issue: foundation).

One notifier process as in production; load from another process (bench/loadgen.py). For the captured 2-alert
payload and a 100-alert group, it measures (a) POST /webhook/alertmanager with durable SQLite storage
(WAL, synchronous=FULL, group commit) routed to a receiver without targets, so that intake alone is measured, and
(b) POST /webhook/alertmanager/validate in the same app, which only validates the same payload. A third row,
"+deliver", routes to a `log` target, so the same process also renders and delivers every message. Every request
of (a) is a distinct notification (no duplicate short-cuts). It prints requests/s, p50 and p99, and the ratio a/b,
under uvicorn (httptools, uvloop) and under granian.

    make bench-intake            # or: .venv/bin/python bench/intake.py --duration 8
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
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--servers", default="uvicorn,granian")
    a = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    files = {}
    for kind, n in (("2-alert", 20000), ("100-alert", 2000)):
        f = workdir / f"{kind}.json"
        f.write_text(json.dumps(bodies(kind, n)))
        files[kind] = f
    print(f"{'server':8} {'payload':10} {'endpoint':10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}   statuses")
    summary = []
    try:
        for server in a.servers.split(","):
            if server == "granian" and not shutil.which("granian", path=str(Path(sys.executable).parent)):
                print("granian not installed; skipped")
                continue
            for kind, f in files.items():
                res = {}
                for endpoint, path, receiver in (
                    ("validate", "/webhook/alertmanager/validate", "none"),
                    ("durable", "/webhook/alertmanager", "none"),
                    ("+deliver", "/webhook/alertmanager", "sink"),
                ):
                    db = workdir / f"{server}-{kind}-{endpoint}.db"
                    port = free_port()
                    cfg = workdir / f"{server}.yml"
                    cfg.write_text(
                        f"server: {{listen: '127.0.0.1:{port}', auth: {{bearer_token: bench}}}}\n"
                        f"storage: {{url: 'sqlite:///{db}'}}\n"
                        "receivers: [{name: sink, log: [{stream: stdout}]}, {name: none}]\n"
                        f"routes: {{receiver: {receiver}}}\n"
                    )
                    proc = start_server(server, cfg, port, workdir)
                    try:
                        load(f"http://127.0.0.1:{port}{path}", f, a.concurrency, 1.0)  # warm-up
                        r = load(f"http://127.0.0.1:{port}{path}", f, a.concurrency, a.duration, seq_start=5_000_000)
                    finally:
                        proc.terminate()
                        proc.wait(30)
                    res[endpoint] = r
                    print(
                        f"{server:8} {kind:10} {endpoint:10} {r['rps']:8.0f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f}"
                        f"   {r['statuses']}" + (f" duplicates {r['duplicates']}" if r["duplicates"] else "")
                    )
                summary.append(
                    (
                        server,
                        kind,
                        res["durable"]["rps"] / res["validate"]["rps"],
                        res["+deliver"]["rps"] / res["validate"]["rps"],
                    )
                )
        print()
        for server, kind, ratio, with_delivery in summary:
            print(
                f"{server:8} {kind:10} a/b durable/validate-only = {ratio:.2f}"
                f"   (with each message also delivered by the same process: {with_delivery:.2f})"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
