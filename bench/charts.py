"""Charts benchmark (issue: the chart at a glance).

1. Chart time: `Charter.draw` (query_range over loopback, the series matched, matplotlib Agg in its thread) for 1
   and 5 series of an hour at 15 s steps, served by a stand-in for Prometheus in this process; p50 and p99, each
   chart drawn anew (the cache is bypassed), and the ratio of 5 series to 1.
2. What charts cost the text: webhook -> sendMessage latency through one notifier process (SQLite) at a steady
   rate, with charts off and on in alternating rounds (each firing group's message followed by its chart), as the
   fake Bot API saw each text and as the notifier recorded it (webhook received -> provider answered). The text
   must not be slower by more than 10 % (ratio on / off at p50 and p99).

    .venv/bin/python bench/charts.py [--charts 40] [--rate 10] [--duration 30] [--rounds 8] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.delivery_latency import paced, pct  # noqa: E402
from notifier.charts import Charter  # noqa: E402
from notifier.configtypes import Duration  # noqa: E402
from notifier.settings_access import ChartSettings  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402
from tests.helpers import fixture_json, free_port  # noqa: E402

STEP = 15.0


class StandIn:
    """query_range answered with `series` sine-shaped series over the asked range, at the asked step."""

    def __init__(self, series: int) -> None:
        self.series = series
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> StandIn:
        app = web.Application()
        app.router.add_get("/api/v1/query_range", self._range)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _range(self, request: web.Request) -> web.Response:
        start, end = float(request.query["start"]), float(request.query["end"])
        step = float(request.query["step"])
        times = [start + i * step for i in range(int((end - start) / step) + 1)]
        result = [
            {
                "metric": {"__name__": "trader_drawdown_ratio", "bot": f"bot-{k:03d}"},
                "values": [[t, f"{0.15 + 0.05 * math.sin(t / 600 + k):.4f}"] for t in times],
            }
            for k in range(self.series)
        ]
        return web.json_response({"status": "success", "data": {"resultType": "matrix", "result": result}})


def alerts(series: int) -> list[dict[str, Any]]:
    link = "http://prometheus:9090/graph?g0.expr=trader_drawdown_ratio+%3E+0.2"
    return [
        {"status": "firing", "labels": {"bot": f"bot-{k:03d}"}, "generatorURL": link, "fingerprint": f"{k:016x}"}
        for k in range(series)
    ]


async def chart_times(series: int, n: int) -> list[float]:
    standin = await StandIn(series).start()
    charter = Charter(ChartSettings(prometheus_url=standin.url, max_series=5, timeout=Duration(30.0)))
    charter.start()  # as the notifier does: the drawing process is up and warm before the first alert
    out = []
    try:
        await charter.draw("warm", alerts(series), "warm", "critical", "UTC", time.time())
        for i in range(n):
            started = time.perf_counter()
            chart = await charter.draw(
                f"bench-{series}-{i}", alerts(series), "CRITICAL: CriticalDrawdown", "critical", "UTC", time.time()
            )
            assert chart.png is not None, chart.reason
            out.append(time.perf_counter() - started)
    finally:
        await charter.aclose()
        await standin.stop()
    return out


async def text_latency(
    fake: FakeTelegram, charts: bool, rate: float, duration: float, workdir: Path
) -> tuple[list[float], list[float]]:
    standin = await StandIn(1).start()
    port = free_port()
    cfg: dict[str, Any] = {
        "server": {"listen": f"127.0.0.1:{port}", "auth": {"bearer_token": "bench"}},
        "storage": {"url": f"sqlite:///{workdir}/charts-{charts}.db"},
        "receivers": [
            {
                "name": f"chat{c}",
                "message": {"chart": charts},
                "telegram": [{"bot_token": fake.token, "chat_id": 1000 + c, "api_url": fake.url}],
            }
            for c in range(50)
        ],
        "routes": {
            "receiver": "chat0",
            "routes": [{"matchers": [f'chat="{c}"'], "receivers": [f"chat{c}"]} for c in range(50)],
        },
    }
    if charts:
        cfg["charts"] = {"prometheus_url": standin.url}
    path = workdir / f"charts-{charts}.yml"
    path.write_text(json.dumps(cfg))
    log = (workdir / f"notifier-{charts}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "notifier", "serve", "--config", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(ROOT),
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )
    posted: dict[str, float] = {}
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(600):
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)

            async def one(i: int) -> None:
                body = fixture_json("01-critical-firing-two-alerts.json")
                name = f"Chart{int(charts)}x{i}"
                body["groupKey"] = f'{{}}:{{alertname="{name}"}}'
                body["groupLabels"] = {"alertname": name}
                body["commonLabels"] = {**body["commonLabels"], "alertname": name, "chat": str(i % 50)}
                for a in body["alerts"]:
                    a["labels"]["alertname"] = name
                    a["generatorURL"] = "http://prometheus:9090/graph?g0.expr=trader_drawdown_ratio+%3E+0.2"
                posted[name] = time.time()
                await client.post(
                    f"http://127.0.0.1:{port}/webhook/alertmanager",
                    json=body,
                    headers={"Authorization": "Bearer bench"},
                )

            before = len(fake.sent)
            await paced(rate, duration, one)
            deadline = time.time() + 60
            while time.time() < deadline and (
                len(fake.sent) - before < len(posted) or (charts and len(fake.photos) < len(posted))
            ):
                await asyncio.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)
        await standin.stop()
    lat = []
    for s in fake.sent[before:]:
        name = s.text.split("\n")[0].split(": ", 1)[-1].split(" ")[0].replace("</b>", "")
        if name in posted:
            lat.append(s.at - posted[name])
    return lat, recorded(workdir / f"charts-{charts}.db")


def recorded(db: Path) -> list[float]:
    """Each text's time from the webhook's receipt to the provider's answer, as the notifier recorded them: free of
    this process's own loop, which also serves the fake's photo uploads and the Prometheus stand-in."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT d.sent_at - n.received_at FROM deliveries d JOIN notifications n ON n.id = d.notification_id "
            "WHERE d.kind = 'alert' AND d.state = 'sent'"
        ).fetchall()
    return [float(r[0]) for r in rows]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--charts", type=int, default=40, help="charts drawn per series count")
    ap.add_argument("--rate", type=float, default=10.0, help="webhooks per second")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per round")
    # the p99 of a few rounds moves from run to run more than charts move it: eight rounds make it steady
    ap.add_argument("--rounds", type=int, default=8, help="rounds of charts off and on, alternating")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs (the tests do)")
    a = ap.parse_args()
    if a.quick:
        vars(a).update({"charts": 3, "rate": 5.0, "duration": 2.0, "rounds": 1})
    one = await chart_times(1, a.charts)
    five = await chart_times(5, a.charts)
    print(f"chart time, 1h at {STEP:g}s steps ({a.charts} charts each):   p50 ms   p99 ms")
    print(f"  1 series                                   {pct(one, 0.5):8.1f} {pct(one, 0.99):8.1f}")
    print(f"  5 series                                   {pct(five, 0.5):8.1f} {pct(five, 0.99):8.1f}")
    print(f"  ratio 5 / 1 series                         {pct(five, 0.5) / pct(one, 0.5):8.2f}")
    chats = {1000 + c for c in range(50)}
    fake = await FakeTelegram(chats=set(chats)).start()
    workdir = Path(tempfile.mkdtemp(prefix="bench-charts-"))
    # Rounds in the order off, on, on, off, ...: this machine drifts by tens of percent within a minute, and a
    # single pair of runs says more about the drift than about charts.
    seen: dict[bool, list[float]] = {False: [], True: []}  # as the fake Bot API saw each text
    kept: dict[bool, list[float]] = {False: [], True: []}  # as the notifier recorded it
    try:
        for r in range(a.rounds):
            for charts in (False, True) if r % 2 == 0 else (True, False):
                (workdir / f"round-{r}").mkdir(exist_ok=True)
                lat, rec = await text_latency(fake, charts, a.rate, a.duration, workdir / f"round-{r}")
                seen[charts] += lat
                kept[charts] += rec
    finally:
        await fake.stop()
    print(
        f"webhook -> text at {a.rate:g}/s, {a.rounds} rounds of {a.duration:g}s each:  p50 ms   p99 ms"
        f"   ({len(fake.photos)} charts sent)"
    )
    for what, by_mode in (("as the fake Bot API saw them", seen), ("as the notifier recorded them", kept)):
        off, on = by_mode[False], by_mode[True]
        print(f"  {what}:")
        print(f"    charts off                               {pct(off, 0.5):8.1f} {pct(off, 0.99):8.1f}")
        print(f"    charts on                                {pct(on, 0.5):8.1f} {pct(on, 0.99):8.1f}")
        print(
            f"    ratio on / off: p50 {pct(on, 0.5) / pct(off, 0.5):.2f}, "
            f"p99 {pct(on, 0.99) / pct(off, 0.99):.2f}   (target: at most 1.10)"
        )


if __name__ == "__main__":
    asyncio.run(main())
