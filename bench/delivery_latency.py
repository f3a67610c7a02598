"""Delivery latency benchmark (issue: delivery).

Latency from the webhook POST to the fake Telegram server receiving sendMessage, at a steady 50 webhooks/s for
60 s, through one notifier process (SQLite, production settings). Baseline, in the same run: python-telegram-bot
sending the same text straight to the same fake server from a plain script at the same rate. Prints p50/p99 of
both and the notifier's overhead.

Each webhook is its own alert group, routed to one of 100 private chats served by 4 bots, so that the notifier's own
rate limits (1 message/s per chat, 30/s per bot; private chats have no 20/minute group limit) do not enter
the figure.

    .venv/bin/python bench/delivery_latency.py [--rate 50] [--duration 60]
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

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.telegram import FakeTelegram  # noqa: E402
from tests.helpers import fixture_json, free_port  # noqa: E402

CHATS = 100
BOTS = 4


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(p * len(v)))] * 1000 if v else float("nan")


async def paced(rate: float, duration: float, fn: object) -> None:
    n = int(rate * duration)
    start = time.perf_counter()
    tasks = []
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fn(i)))  # type: ignore[operator]
    await asyncio.gather(*tasks)


async def baseline(fake: FakeTelegram, tokens: list[str], rate: float, duration: float) -> list[float]:
    from telegram import Bot
    from telegram.request import HTTPXRequest

    bots = [Bot(t, base_url=f"{fake.url}/bot", request=HTTPXRequest(connection_pool_size=32)) for t in tokens]
    sent_at: dict[str, float] = {}
    text = "🔴 <b>CRITICAL: CriticalDrawdown</b>\nbaseline {i}"

    async def one(i: int) -> None:
        tag = f"baseline {i}"
        sent_at[tag] = time.time()
        await bots[i % BOTS].send_message(chat_id=1000 + (i % CHATS), text=text.format(i=i), parse_mode="HTML")

    before = len(fake.sent)
    await paced(rate, duration, one)
    for b in bots:
        await b.shutdown()
    lat = []
    for s in fake.sent[before:]:
        tag = s.text.split("\n")[-1]
        if tag in sent_at:
            lat.append(s.at - sent_at[tag])
    return lat


async def notifier_run(
    fake: FakeTelegram, tokens: list[str], rate: float, duration: float, workdir: Path
) -> tuple[list[float], int]:
    port = free_port()
    receivers = []
    routes = []
    for c in range(CHATS):
        receivers.append(
            {
                "name": f"chat{c}",
                "telegram": [
                    {
                        "bot_token": tokens[c % BOTS],
                        "chat_id": 1000 + c,
                        "api_url": fake.url,
                        "silent_severities": [],
                    }
                ],
            }
        )
        routes.append({"matchers": [f'chat="{c}"'], "receivers": [f"chat{c}"]})
    cfg = {
        "server": {"listen": f"127.0.0.1:{port}", "auth": {"bearer_token": "bench"}},
        "storage": {"url": f"sqlite:///{workdir}/n.db"},
        "receivers": receivers,
        "routes": {"receiver": "chat0", "routes": routes},
    }
    path = workdir / "notifier.yml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    log = (workdir / "notifier.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "notifier", "serve", "--config", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(ROOT),
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(600):
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise SystemExit(f"the notifier did not start; see {workdir / 'notifier.log'}")
            posted: dict[str, float] = {}
            statuses: dict[int, int] = {}

            async def one(i: int) -> None:
                body = fixture_json("01-critical-firing-two-alerts.json")
                name = f"BenchAlert{i}"
                body["groupKey"] = f'{{}}:{{alertname="{name}"}}'
                body["groupLabels"] = {"alertname": name}
                body["commonLabels"] = {**body["commonLabels"], "alertname": name, "chat": str(i % CHATS)}
                for a in body["alerts"]:
                    a["labels"]["alertname"] = name
                posted[name] = time.time()
                r = await client.post(
                    f"http://127.0.0.1:{port}/webhook/alertmanager",
                    json=body,
                    headers={"Authorization": "Bearer bench"},
                )
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

            before = len(fake.sent)
            await paced(rate, duration, one)
            deadline = time.time() + 30
            while len(fake.sent) - before < len(posted) and time.time() < deadline:
                await asyncio.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)
    lat = []
    for s in fake.sent[before:]:
        first = s.text.split("\n")[0]
        name = first.split(": ", 1)[-1].split(" ")[0].replace("</b>", "")
        if name in posted:
            lat.append(s.at - posted[name])
    return lat, len(posted) - len(lat)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs (the tests do)")
    a = ap.parse_args()
    if a.quick:
        vars(a).update({"rate": 20.0, "duration": 2.0})
    tokens = [f"{100000 + b}:bench-bot-{b}" for b in range(BOTS)]
    fake = FakeTelegram(token=tokens[0], extra_tokens=set(tokens[1:]), chats={1000 + c for c in range(CHATS)})
    await fake.start()
    workdir = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    try:
        base = await baseline(fake, tokens, a.rate, a.duration)
        lat, missing = await notifier_run(fake, tokens, a.rate, a.duration, workdir)
    finally:
        await fake.stop()
    print(
        f"{a.rate:g} webhooks/s for {a.duration:g}s; {len(lat)} delivered, {missing} missing, {fake.rate_limited} 429s"
    )
    print(f"{'':34} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'baseline: PTB straight to the fake':34} {pct(base, 0.5):8.1f} {pct(base, 0.99):8.1f}")
    print(f"{'notifier: POST -> sendMessage':34} {pct(lat, 0.5):8.1f} {pct(lat, 0.99):8.1f}")
    print(
        f"{'overhead':34} {pct(lat, 0.5) - pct(base, 0.5):8.1f} {pct(lat, 0.99) - pct(base, 0.99):8.1f}"
        "   (targets: p50 <= 10, p99 <= 50)"
    )


if __name__ == "__main__":
    asyncio.run(main())
