"""Rendering benchmark: huge groups render in time linear in their size, off the event loop.

1. Render time per channel (Telegram, Slack, email, log) for one group of 100, 1,000, 10,000 and 30,000 small
   alerts, from the stored body (decode + the group + rendering), as the worker does it. Prints the per-alert cost
   ratio 30,000 : 100 (target <= 2: linear or better).
2. One `notifier serve` process (SQLite) with a fake Telegram server: `/healthz` p99 while a 30,000-alert group is
   being delivered, against the same server idle (target: within 20 ms of idle).
3. In the same server, webhook -> fake Telegram latency of a critical 2-alert group posted while the 30,000-alert
   group is being rendered and sent (target < 1 s). The big group goes to one chat, the critical one to the on-call
   chat, as severity routing does; both through the same bot.

    .venv/bin/python bench/render.py [--rounds 5] [--repeat 3] [--quick]

`--quick` (the test suite runs it: the benchmark must keep working) renders 100 and 1,000 alerts and serves one
1,000-alert group: a check that it runs, not a measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from notifier.channels import log as log_channel  # noqa: E402
from notifier.channels import slack as slack_channel  # noqa: E402
from notifier.channels import telegram as telegram_channel  # noqa: E402
from notifier.channels.email import EmailTarget  # noqa: E402
from notifier.clock import SystemClock  # noqa: E402
from notifier.domain import ChangeRecord, Delivery  # noqa: E402
from notifier.messages import build_message  # noqa: E402
from notifier.templates import Renderer  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402
from tests.helpers import TOKEN, fixture_json, free_port  # noqa: E402
from tests.notifier.test_hostile_e2e import compact_group  # noqa: E402

SIZES = (100, 1_000, 10_000, 30_000)
BIG_CHAT, ONCALL_CHAT = 42, -1001234567890
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def render_times(repeat: int, sizes: tuple[int, ...] = SIZES) -> dict[int, dict[str, float]]:
    from notifier.channels.email import EmailChannel

    renderer = Renderer()
    clock = SystemClock()
    email = EmailChannel(
        "r/email/0", EmailTarget(host="h", from_="a@example.com", to=["b@example.com"]), renderer, clock
    )
    out: dict[int, dict[str, float]] = {}
    for n in sizes:
        body = json.dumps(compact_group(n)).encode()
        row = Delivery.new(
            id="d",
            notification_id="n",
            receiver="r",
            target="r/x/0",
            channel="x",
            group_key="g",
            group_hash="h",
            change=ChangeRecord(),
            now=0.0,
        )
        best: dict[str, float] = {}
        for _ in range(repeat):
            for channel, render in (
                ("telegram", lambda m: telegram_channel.render(renderer, m, clock.now())),
                ("slack", lambda m: slack_channel.render(renderer, m, clock.now())),
                ("email", email.build),
                ("log", lambda m: log_channel.render(renderer, m, clock.now())),
            ):
                t = time.perf_counter()
                message = build_message(row, ChangeRecord(), body, True, None)
                render(message)
                took = time.perf_counter() - t
                best[channel] = min(best.get(channel, took), took)
        out[n] = best
    return out


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(p * len(v)))] * 1000


async def health_samples(client: httpx.AsyncClient, until: Any, at_least: int) -> list[float]:
    samples: list[float] = []
    while len(samples) < at_least or not until():
        t = time.perf_counter()
        r = await client.get("/healthz")
        samples.append(time.perf_counter() - t)
        assert r.status_code == 200
        await asyncio.sleep(0.005)
    return samples


async def served(
    rounds: int, big_size: int = 30_000, idle_samples: int = 300
) -> tuple[list[float], list[float], list[float]]:
    fake = await FakeTelegram().start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-render-"))
    port = free_port()
    target = {"bot_token": fake.token, "api_url": fake.url}
    cfg = {
        "server": {"listen": f"127.0.0.1:{port}", "auth": {"bearer_token": TOKEN}, "max_body_bytes": 8 << 20},
        "storage": {"url": f"sqlite:///{tmp}/notifier.db"},
        "delivery": {"poll_interval": "50ms"},
        "receivers": [
            {"name": "big", "telegram": [{**target, "chat_id": BIG_CHAT}]},
            {"name": "oncall", "telegram": [{**target, "chat_id": ONCALL_CHAT}]},
        ],
        "routes": {"receiver": "big", "routes": [{"matchers": ['severity="critical"'], "receiver": "oncall"}]},
    }
    (tmp / "notifier.yml").write_text(yaml.safe_dump(cfg))
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "notifier", "serve", "--config", str(tmp / "notifier.yml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
    idle: list[float] = []
    busy: list[float] = []
    critical: list[float] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(200):
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            idle = await health_samples(client, lambda: True, idle_samples)
            for r in range(rounds):
                big = compact_group(big_size, name=f"BotHeartbeatLost{r}")
                small = fixture_json("01-critical-firing-two-alerts.json")
                small["groupKey"] = f"{small['groupKey']}-{r}"
                small["alerts"][0]["fingerprint"] = f"r{r}"
                big_before = sum(1 for s in fake.sent if s.chat_id == BIG_CHAT)
                crit_before = sum(1 for s in fake.sent if s.chat_id == ONCALL_CHAT)
                resp = await client.post("/webhook/alertmanager", content=json.dumps(big), headers=HEADERS)
                assert resp.status_code == 202, resp.text

                def big_sent(before: int = big_before) -> bool:
                    return sum(1 for s in fake.sent if s.chat_id == BIG_CHAT) > before

                async def post_critical(body: bytes, before: int) -> float:
                    await asyncio.sleep(0.05)  # the worker has the big group by now: decoding or rendering it
                    t = time.perf_counter()
                    resp = await client.post("/webhook/alertmanager", content=body, headers=HEADERS)
                    assert resp.status_code == 202, resp.text
                    while sum(1 for s in fake.sent if s.chat_id == ONCALL_CHAT) <= before:
                        await asyncio.sleep(0.002)
                    return time.perf_counter() - t

                samples, latency = await asyncio.gather(
                    health_samples(client, big_sent, 20), post_critical(json.dumps(small).encode(), crit_before)
                )
                busy += samples
                critical.append(latency)
                await asyncio.sleep(1.5)  # Telegram's 1/s per chat: the next round starts with free slots
    finally:
        proc.terminate()
        proc.wait(30)
        await fake.stop()
    return idle, busy, critical


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="30,000-alert groups delivered while measuring")
    ap.add_argument("--repeat", type=int, default=3, help="renders per size and channel (the fastest counts)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: check that it runs")
    args = ap.parse_args()
    sizes, big = ((100, 1_000), 1_000) if args.quick else (SIZES, 30_000)
    if args.quick:
        args.rounds, args.repeat = 1, 1

    print("1. render time per channel, decode included (fastest of --repeat)")
    times = render_times(args.repeat, sizes)
    print(f"   {'alerts':>7} " + " ".join(f"{c:>12}" for c in ("telegram", "slack", "email", "log")))
    for n, by in times.items():
        print(f"   {n:>7} " + " ".join(f"{by[c] * 1000:>9.1f} ms" for c in ("telegram", "slack", "email", "log")))
    for c in ("telegram", "slack", "email", "log"):
        ratio = (times[sizes[-1]][c] / sizes[-1]) / (times[100][c] / 100)
        print(f"   per-alert cost {sizes[-1]:,} : 100, {c:8}: {ratio:.3f}  (target <= 2)")

    print(f"\n2./3. one notifier process, {args.rounds} groups of {big:,} alerts")
    idle, busy, critical = asyncio.run(served(args.rounds, big, 30 if args.quick else 300))
    p99_idle, p99_busy = pct(idle, 0.99), pct(busy, 0.99)
    print(f"   /healthz idle: p50 {pct(idle, 0.5):.1f} ms, p99 {p99_idle:.1f} ms ({len(idle)} requests)")
    print(f"   /healthz while a {big:,}-alert group is delivered: p50 {pct(busy, 0.5):.1f} ms, p99 {p99_busy:.1f} ms")
    print(f"   ({len(busy)} requests); p99 difference {p99_busy - p99_idle:.1f} ms (target <= 20 ms)")
    print(
        f"   critical 2-alert group, webhook -> Telegram, posted meanwhile: median "
        f"{statistics.median(critical) * 1000:.0f} ms, max {max(critical) * 1000:.0f} ms (target < 1000 ms)"
    )


if __name__ == "__main__":
    main()
