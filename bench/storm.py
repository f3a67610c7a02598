"""Alert-storm benchmark (issue: dedup, quiet hours, digests).

10,000 alerts in 500 groups posted within one minute, all routed to one Telegram group chat; the fake Bot API
enforces 20 messages per minute with 429s beyond it. Once through the notifier (one process, SQLite), once through
Alertmanager 0.25's own Telegram notifier (the baseline), side by side: messages sent, the most in any minute, 429s,
alerts represented in what was sent (named, or counted in a storm summary), alerts lost, time from the first
critical alert to its message, time to drain.

    .venv/bin/python bench/storm.py [--groups 500] [--per-group 20] [--window 60] [--observe 180]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.telegram import FakeTelegram, check_html  # noqa: E402
from tests.helpers import free_port  # noqa: E402

CHAT = -1001234567890
TOKEN = "123456:storm-bench"


def group_name(g: int) -> str:
    return f"Storm{g:03d}"


def severity(g: int, critical_group: int) -> str:
    return "critical" if g == critical_group else ("warning" if g % 2 else "info")


def webhook(g: int, n: int, critical_group: int, now: datetime) -> dict[str, Any]:
    name, sev = group_name(g), severity(g, critical_group)
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": name, "severity": sev, "bot": f"bot-{g:03d}-{i:02d}"},
            "annotations": {"summary": f"{name} alert {i}"},
            "startsAt": now.isoformat().replace("+00:00", "Z"),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": f"{g:08x}{i:08x}",
        }
        for i in range(n)
    ]
    return {
        "version": "4",
        "receiver": "notifier",
        "status": "firing",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name, "severity": sev},
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "truncatedAlerts": 0,
        "alerts": alerts,
    }


def stats(
    fake: FakeTelegram, started: float, groups: int, per_group: int, critical_at: float | None, critical_group: int
) -> dict[str, Any]:
    sent = list(fake.sent)
    times = sorted(s.at for s in sent)
    most = max((sum(1 for t in times if a <= t < a + 60) for a in times), default=0)
    texts = [check_html(s.text) if s.parse_mode == "HTML" else s.text for s in sent]
    named = {g for g in range(groups) if any(group_name(g) in t for t in texts)}
    counted_groups = counted_alerts = 0
    for t in texts:
        more = sum(int(m) for m in re.findall(r"\+(\d+) more alerts", t))
        if "AlertStorm" in t:
            counted_groups += more  # a storm summary lists groups: "+N more" are N groups
        else:
            counted_alerts += more
    represented = min(groups * per_group, (len(named) + counted_groups) * per_group + counted_alerts)
    crit = next((s.at for s in sent if group_name(critical_group) in s.text), None)
    return {
        "messages": len(sent),
        "most_in_a_minute": most,
        "429s": fake.rate_limited,
        "alerts_represented": represented,
        "alerts_lost": groups * per_group - represented,
        "critical_latency_s": (crit - critical_at) if crit and critical_at else None,
        "drain_s": (times[-1] - started) if times else None,
    }


async def post_all(
    url: str, bodies: list[dict[str, Any]], window: float, critical_group: int, headers: dict[str, str]
) -> tuple[float, float | None]:
    started = time.time()
    critical_at = None
    async with httpx.AsyncClient(timeout=30) as client:
        for i, b in enumerate(bodies):
            delay = started + i * window / len(bodies) - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if i == critical_group:
                critical_at = time.time()
            r = await client.post(url, json=b, headers=headers)
            r.raise_for_status()
    return started, critical_at


async def run_notifier(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    fake = FakeTelegram(token=TOKEN, chats={CHAT}, group_limit_per_minute=20)
    await fake.start()
    port = free_port()
    cfg = {
        "server": {"listen": f"127.0.0.1:{port}", "auth": {"bearer_token": "bench"}},
        "storage": {"url": f"sqlite:///{workdir}/n.db"},
        "receivers": [{"name": "tg", "telegram": [{"bot_token": TOKEN, "chat_id": CHAT, "api_url": fake.url}]}],
        "routes": {"receiver": "tg"},
    }
    (workdir / "n.yml").write_text(json.dumps(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "notifier", "serve", "--config", str(workdir / "n.yml")],
        cwd=str(ROOT),
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "n.log").open("wb"),
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )
    try:
        await wait_ready(f"http://127.0.0.1:{port}/readyz")
        now = datetime.now(UTC)
        bodies = [webhook(g, args.per_group, args.critical_group, now) for g in range(args.groups)]
        started, critical_at = await post_all(
            f"http://127.0.0.1:{port}/webhook/alertmanager",
            bodies,
            args.window,
            args.critical_group,
            {"Authorization": "Bearer bench"},
        )
        async with httpx.AsyncClient() as client:
            deadline = time.time() + args.observe
            while time.time() < deadline:
                r = await client.get(
                    f"http://127.0.0.1:{port}/api/v1/deliveries?state=pending",
                    headers={"Authorization": "Bearer bench"},
                )
                if not r.json()["deliveries"]:
                    break
                await asyncio.sleep(1)
        return stats(fake, started, args.groups, args.per_group, critical_at, args.critical_group)
    finally:
        proc.terminate()
        proc.wait(30)
        await fake.stop()


async def run_alertmanager(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    exe = shutil.which("prometheus-alertmanager")
    if exe is None:
        return {"error": "prometheus-alertmanager not installed"}
    fake = FakeTelegram(token=TOKEN, chats={CHAT}, group_limit_per_minute=20)
    await fake.start()
    port = free_port()
    cfg = {
        "route": {
            "receiver": "tg",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "5m",
            "repeat_interval": "4h",
        },
        "receivers": [
            {
                "name": "tg",
                "telegram_configs": [
                    {
                        "bot_token": TOKEN,
                        "chat_id": CHAT,
                        "api_url": fake.url,
                        "send_resolved": True,
                        "parse_mode": "HTML",
                    }
                ],
            }
        ],
    }
    (workdir / "am.yml").write_text(json.dumps(cfg))
    proc = subprocess.Popen(
        [
            exe,
            f"--config.file={workdir / 'am.yml'}",
            f"--storage.path={workdir / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "am.log").open("wb"),
    )
    try:
        await wait_ready(f"http://127.0.0.1:{port}/-/ready")
        now = datetime.now(UTC)
        bodies = []
        for g in range(args.groups):
            b = webhook(g, args.per_group, args.critical_group, now)
            bodies.append(
                [
                    {
                        "labels": a["labels"],
                        "annotations": a["annotations"],
                        "startsAt": a["startsAt"],
                        "endsAt": (now + timedelta(hours=1)).isoformat(),
                    }
                    for a in b["alerts"]
                ]
            )
        started = time.time()
        critical_at = None
        async with httpx.AsyncClient(timeout=30) as client:
            for i, alerts in enumerate(bodies):
                delay = started + i * args.window / len(bodies) - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if i == args.critical_group:
                    critical_at = time.time()
                (await client.post(f"http://127.0.0.1:{port}/api/v2/alerts", json=alerts)).raise_for_status()
        await asyncio.sleep(args.observe)
        return stats(fake, started, args.groups, args.per_group, critical_at, args.critical_group)
    finally:
        proc.terminate()
        proc.wait(30)
        await fake.stop()


async def wait_ready(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} never became ready")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--groups", type=int, default=500)
    ap.add_argument("--per-group", type=int, default=20)
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--observe", type=float, default=120.0, help="seconds to watch after the last POST")
    ap.add_argument("--critical-group", type=int, default=250)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs (the tests do)")
    args = ap.parse_args()
    if args.quick:
        vars(args).update({"groups": 20, "per_group": 2, "window": 2.0, "observe": 5.0, "critical_group": 10})
    workdir = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    notifier = await run_notifier(args, workdir)
    am = await run_alertmanager(args, workdir)
    print(
        f"{args.groups * args.per_group:,} alerts in {args.groups} groups within {args.window:g}s, one Telegram "
        f"group chat limited to 20 messages/minute"
    )
    print(f"{'':24} {'notifier':>14} {'Alertmanager 0.25':>18}")
    for key in (
        "messages",
        "most_in_a_minute",
        "429s",
        "alerts_represented",
        "alerts_lost",
        "critical_latency_s",
        "drain_s",
    ):

        def fmt(v: Any) -> str:
            return "n/a" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v))

        print(f"{key:24} {fmt(notifier.get(key)):>14} {fmt(am.get(key)):>18}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
