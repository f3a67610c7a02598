"""Charts of an alert's own series, through the real path: the webhook, the store, the worker, a real Prometheus
scraping a test exporter, matplotlib, and python-telegram-bot's sendPhoto against the strict fake Bot API. A chart
never costs the text: Prometheus away, no data, or the provider refusing the picture still deliver the message."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from matplotlib.image import imread
from sqlalchemy import select

from notifier.charts.plan import Plan, expression_of, plan
from notifier.runtime import Runtime
from notifier.store.tables import timeline
from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import SMTPServer
from tests.fakes.telegram import FakeTelegram
from tests.helpers import TOKEN, free_port, make_group, settings_from, wait_for
from tests.notifier.charts.conftest import Prometheus
from tests.notifier.harness import post, running

RED = (211, 47, 47)  # critical: the threshold line
BLUE = (21, 101, 192)  # the first series


def config(tg: FakeTelegram, prometheus_url: str) -> dict[str, object]:
    return {
        "server": {"auth": {"bearer_token": TOKEN}},
        "delivery": {"poll_interval": "50ms", "backoff_initial": "100ms", "backoff_max": "1s"},
        "charts": {"prometheus_url": prometheus_url, "range": "2m"},
        "receivers": [
            {
                "name": "oncall",
                "message": {"chart": True, "timezone": "Europe/Berlin"},
                "telegram": [{"bot_token": tg.token, "chat_id": 42, "api_url": tg.url}],
            }
        ],
        "routes": {"receiver": "oncall"},
    }


def drawdown(expr: str = "trader_drawdown_ratio > 0.2", key: str = "grid") -> str:
    group = make_group(1, severity="critical", name="CriticalDrawdown", group_key=f'{{}}:{{group="{key}"}}')
    alert = group["alerts"][0]
    alert["labels"]["bot"] = "grid-btc"
    alert["generatorURL"] = "http://prometheus:9090/graph?" + urlencode({"g0.expr": expr, "g0.tab": "1"})
    return json.dumps(group)


def rows_of(png: bytes, colour: tuple[int, int, int]) -> dict[int, int]:
    """Per pixel row, how many pixels have `colour` (give or take antialiasing)."""
    image = imread(io.BytesIO(png))[:, :, :3]
    near = np.all(np.abs(image - np.array(colour) / 255) < 0.08, axis=2)
    return {int(y): int(n) for y, n in enumerate(near.sum(axis=1)) if n}


def drawing_processes() -> list[int]:
    """This process's children that draw charts (the spawned workers of a process pool)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == os.getpid() and b"spawn_main" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue  # not a process, or gone meanwhile
    return found


async def lines(rt: Runtime) -> list[str]:
    async with rt.store.begin() as conn:
        return [str(t) for t in (await conn.execute(select(timeline.c.text).order_by(timeline.c.id))).scalars()]


def test_the_expression_is_read_from_the_link_and_a_comparison_with_a_number_is_split() -> None:
    link = "http://prometheus:9090/graph?" + urlencode({"g0.expr": "max by (bot) (dd) > 0.2", "g0.tab": "1"})
    assert expression_of(link) == "max by (bot) (dd) > 0.2"
    assert expression_of("http://prometheus:9090/graph") is None
    assert plan("max by (bot) (dd) > 0.2") == Plan("max by (bot)(dd{})", 0.2, ">")
    assert plan("0.1 >= dd") == Plan("dd{}", 0.1, "<=")  # the number on the left: the comparison turned round
    for as_it_is in ("dd > bool 0.2", "dd > other", "absent(up)", "dd > 0.2 and up == 1", "not promql ("):
        assert plan(as_it_is) == Plan(as_it_is)


async def test_a_firing_group_gets_a_chart_of_its_series_in_reply_to_its_message(
    sqlite_url: str, fake_telegram: FakeTelegram, prometheus: Prometheus
) -> None:
    tg = fake_telegram
    async with running(settings_from(config(tg, prometheus.url), sqlite_url)) as (client, rt):
        assert (await post(client, drawdown())).status_code == 202
        await wait_for(lambda: len(tg.photos) == 1, timeout=20)
        text, photo = tg.sent[0], tg.photos[0]
        assert photo.reply_to_message_id == text.message_id and photo.chat_id == 42
        assert photo.disable_notification  # the text made the sound
        assert (photo.width, photo.height) == (800, 450)
        assert photo.caption.startswith("CRITICAL: CriticalDrawdown · last 2m")
        # the threshold, dashed across the plot, and the alert's own series above it (0.25 > 0.2); the other bot's
        # series (0.05) is not the alert's and is left out
        red = {y: n for y, n in rows_of(photo.png, RED).items() if y > 80 and n > 200}
        blue = rows_of(photo.png, BLUE)
        assert red and blue
        assert max(y for y, n in blue.items() if n > 20) < min(red)
        assert "dca-eth" not in photo.caption

        async def recorded() -> bool:
            return any(t.startswith("chart sent to oncall/telegram/0") for t in await lines(rt))

        await wait_for(recorded)
        assert rt.registry.get_sample_value("notifier_charts_total", {"outcome": "drawn"}) == 1
        # the drawing runs only when the processor has nothing else to do: a webhook or a text takes it at once
        drawing = drawing_processes()
        assert drawing and all(os.sched_getscheduler(pid) == os.SCHED_IDLE for pid in drawing), drawing


async def test_the_text_goes_when_prometheus_is_away_there_is_no_data_or_the_picture_is_refused(
    sqlite_url: str, fake_telegram: FakeTelegram, prometheus: Prometheus
) -> None:
    tg = fake_telegram
    away = f"http://127.0.0.1:{free_port()}"
    async with running(settings_from(config(tg, away), sqlite_url)) as (client, rt):
        assert (await post(client, drawdown())).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        await wait_for(lambda: rt.registry.get_sample_value("notifier_charts_total", {"outcome": "failed"}) == 1)
        assert tg.photos == []

        async def said() -> bool:
            return any(t.startswith("no chart: Prometheus unreachable") for t in await lines(rt))

        await wait_for(said)

    tg.sent.clear()
    async with running(settings_from(config(tg, prometheus.url), sqlite_url)) as (client, rt):
        assert (await post(client, drawdown("no_such_series > 1", key="other"))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        await wait_for(lambda: rt.registry.get_sample_value("notifier_charts_total", {"outcome": "no_data"}) == 1)
        assert tg.photos == []

        tg.photo_refusal = "IMAGE_PROCESS_FAILED"
        started = time.time()
        body = json.loads(drawdown(key="third"))
        assert (await post(client, json.dumps(body))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 2)
        await wait_for(lambda: rt.registry.get_sample_value("notifier_charts_total", {"outcome": "refused"}) == 1)
        assert tg.photos == [] and tg.sent[1].at >= started

        async def refused() -> bool:
            return any("the chart was refused" in t for t in await lines(rt))

        await wait_for(refused)


async def test_a_slack_bot_gets_the_chart_uploaded_into_the_groups_thread(
    sqlite_url: str, fake_slack: FakeSlack, prometheus: Prometheus
) -> None:
    slack = fake_slack
    data = {
        "server": {"auth": {"bearer_token": TOKEN}},
        "delivery": {"poll_interval": "50ms", "backoff_initial": "100ms", "backoff_max": "1s"},
        "charts": {"prometheus_url": prometheus.url, "range": "2m"},
        "receivers": [
            {
                "name": "desk",
                "message": {"chart": True},
                "slack": [{"bot_token": slack.token, "channel": "#trading-alerts", "api_url": slack.api_url}],
            }
        ],
        "routes": {"receiver": "desk"},
    }
    async with running(settings_from(data, sqlite_url)) as (client, rt):
        assert (await post(client, drawdown())).status_code == 202
        await wait_for(lambda: len(slack.files) == 1, timeout=20)
        text, chart = slack.posted[0], slack.files[0]
        # in the thread of the group's message, in the channel by its ID (a name would be refused)
        assert (chart.channel, chart.thread_ts) == ("C0TRADING", text.ts)
        assert chart.title.startswith("CRITICAL: CriticalDrawdown · last 2m") and chart.alt_txt == chart.title
        assert imread(io.BytesIO(chart.data)).shape[:2] == (450, 800)
        assert rows_of(chart.data, RED) and rows_of(chart.data, BLUE)
        assert len(slack.posted) == 1 and not slack.uploads  # no other post; every announced upload completed

        async def recorded() -> bool:
            return any(t.startswith("chart sent to desk/slack/0") for t in await lines(rt))

        await wait_for(recorded)

        # Slack refuses to share the file, for good: the chart is skipped, not retried, and the text went
        slack.file_refusal = "not_in_channel"
        assert (await post(client, drawdown(key="second"))).status_code == 202
        await wait_for(lambda: rt.registry.get_sample_value("notifier_charts_total", {"outcome": "refused"}) == 1)
        assert len(slack.posted) == 2 and len(slack.files) == 1


async def test_an_email_carries_the_chart_inside_its_html_and_goes_without_it_when_there_is_none(
    sqlite_url: str, smtp: SMTPServer, prometheus: Prometheus
) -> None:
    mail = {"host": "127.0.0.1", "port": smtp.port, "tls": "none", "from": "n@example.com", "to": ["oncall@x.io"]}
    data = {
        "server": {"auth": {"bearer_token": TOKEN}},
        "charts": {"prometheus_url": prometheus.url, "range": "2m"},
        "receivers": [{"name": "mail", "message": {"chart": True}, "email": [mail]}],
        "routes": {"receiver": "mail"},
    }
    async with running(settings_from(data, sqlite_url)) as (client, rt):
        assert (await post(client, drawdown())).status_code == 202
        await wait_for(lambda: len(smtp.messages) == 1, timeout=20)
        m = smtp.messages[0].message
        html = m.get_body(preferencelist=("html",))
        assert html is not None and html.get_content_type() == "text/html"
        images = [p for p in m.walk() if p.get_content_type() == "image/png"]
        assert len(images) == 1
        cid = str(images[0]["Content-ID"]).strip("<>")
        assert f'src="cid:{cid}"' in html.get_content()
        png = images[0].get_payload(decode=True)
        assert isinstance(png, bytes) and png.startswith(b"\x89PNG")
        assert rows_of(png, RED) and rows_of(png, BLUE)

        assert (await post(client, drawdown("no_such_series > 1", key="quiet"))).status_code == 202
        await wait_for(lambda: len(smtp.messages) == 2, timeout=20)
        second = smtp.messages[1].message
        assert not [p for p in second.walk() if p.get_content_type() == "image/png"]
        assert "cid:" not in str(second)

        async def said() -> bool:
            return any(t.startswith("no chart in the message: no data") for t in await lines(rt))

        await wait_for(said)
