"""The chart on a group's page of the web view: drawn from a real Prometheus while the group fires, served only to
a logged-in viewer, gone once the group resolves; and seen in a real browser (headless Chromium)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import yaml
from matplotlib.image import imread

from notifier.ui.auth import hash_password
from tests.helpers import TOKEN, ServerProcess, free_port, settings_from
from tests.notifier.charts.conftest import Prometheus
from tests.notifier.charts.test_charts import BLUE, RED, drawdown, rows_of
from tests.notifier.harness import post, running
from tests.notifier.ui.test_browser import browser, shot, shows, wait  # noqa: F401  (browser: a fixture)
from tests.notifier.ui.test_pages import PASSWORD, login


def config(prometheus_url: str, *, charts: bool = True) -> dict[str, Any]:
    return {
        "server": {"auth": {"bearer_token": TOKEN}},
        **({"charts": {"prometheus_url": prometheus_url, "range": "2m"}} if charts else {}),
        "receivers": [{"name": "quiet"}],
        "routes": {"receiver": "quiet"},
        "ui": {"users": [{"name": "oncall", "password_hash": hash_password(PASSWORD)}], "timezone": "Europe/Berlin"},
    }


async def group_of(client: httpx.AsyncClient) -> str:
    link = re.search(r'href="/ui/groups/([0-9a-f]{64})"', (await client.get("/ui")).text)
    assert link is not None
    return link.group(1)


async def test_the_group_page_shows_the_chart_of_what_fires_to_a_logged_in_viewer_only(
    sqlite_url: str, prometheus: Prometheus
) -> None:
    async with running(settings_from(config(prometheus.url), sqlite_url)) as (client, _rt):
        body = json.loads(drawdown())
        assert (await post(client, json.dumps(body))).status_code == 202
        session = await login(client)
        client.cookies.set("notifier_session", session, path="/ui")
        group = await group_of(client)
        chart_url = f"/ui/groups/{group}/chart.png"

        # nobody logged in, or a made-up session: no picture, only the way to the login
        client.cookies.clear()
        assert ((r := await client.get(chart_url)).status_code, r.headers.get("location")) == (302, "/ui/login")
        client.cookies.set("notifier_session", session[:-4] + "AAAA", path="/ui")
        assert (await client.get(chart_url)).status_code == 302
        assert (await client.get(chart_url)).headers.get("content-type") != "image/png"

        client.cookies.set("notifier_session", session, path="/ui")
        page = (await client.get(f"/ui/groups/{group}")).text
        assert f'<img src="{chart_url}"' in page
        r = await client.get(chart_url)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.headers["cache-control"] == "no-store"  # as confidential as the page
        assert imread(io.BytesIO(r.content)).shape[:2] == (450, 800)
        assert rows_of(r.content, RED) and rows_of(r.content, BLUE)
        assert (await client.get("/ui/groups/not-a-group/chart.png")).status_code == 404

        # resolved: nothing to draw, and the page says nothing of a chart
        for a in body["alerts"]:
            a["status"] = "resolved"
            a["endsAt"] = a["startsAt"]
        body["status"] = "resolved"
        assert (await post(client, json.dumps(body))).status_code == 202
        page = (await client.get(f"/ui/groups/{group}")).text
        assert "chart.png" not in page
        gone = await client.get(chart_url)
        assert gone.status_code == 404 and gone.text == "Nothing of this group fires now."

    async with running(settings_from(config(prometheus.url, charts=False), sqlite_url)) as (client, _rt):
        client.cookies.set("notifier_session", await login(client), path="/ui")
        assert (await post(client, drawdown(key="off"))).status_code == 202
        group = await group_of(client)
        assert "chart.png" not in (await client.get(f"/ui/groups/{group}")).text
        off = await client.get(f"/ui/groups/{group}/chart.png")
        assert off.status_code == 404 and "Charts are off" in off.text


def test_a_person_sees_the_chart_on_the_group_page_in_a_browser(
    tmp_path: Path,
    browser: Any,  # noqa: F811
    prometheus: Prometheus,
) -> None:
    from selenium.webdriver.common.by import By

    port = free_port()
    cfg = config(prometheus.url)
    cfg["server"]["listen"] = f"127.0.0.1:{port}"
    cfg["storage"] = {"url": f"sqlite:///{tmp_path}/notifier.db"}
    (tmp_path / "notifier.yml").write_text(yaml.safe_dump(cfg))
    server = ServerProcess(tmp_path / "notifier.yml", port).start()
    base = server.url
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.post(f"{base}/webhook/alertmanager", content=drawdown(), headers=auth).status_code == 202
        browser.get(f"{base}/ui/login")
        browser.find_element(By.NAME, "user").send_keys("oncall")
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        shows(browser, "Firing (1)")
        browser.find_element(By.LINK_TEXT, "CriticalDrawdown").click()
        shows(browser, "Timeline")
        img = browser.find_element(By.CSS_SELECTOR, "figure.chart img")
        # loaded and decoded by the browser, at the size it was drawn
        wait(lambda: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == 800)
        assert browser.execute_script("return arguments[0].naturalHeight", img) == 450
        shot(browser, "group-chart")

        browser.set_window_size(390, 844)  # a phone: the chart shrinks to the screen
        browser.refresh()
        shows(browser, "Timeline")
        img = browser.find_element(By.CSS_SELECTOR, "figure.chart img")
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 390
        assert browser.execute_script("return arguments[0].getBoundingClientRect().width", img) <= 390
    finally:
        server.stop()
