"""The web view in a real browser: headless Chromium (Debian's chromium and chromium-driver, driven by selenium)
logs in, reads what fires and waits, opens a group's timeline, retries a dead letter and sees it sent. A POST
without its CSRF token and every page without a session are refused. Each page is written as a screenshot to
test-artifacts/ui/ (or $NOTIFIER_ARTIFACTS/ui/), on a laptop's screen and on a phone's."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from notifier.ui.auth import hash_password
from tests.fakes.telegram import FakeTelegram, ThreadedFake
from tests.helpers import ROOT, TOKEN, ServerProcess, free_port, make_group, need

PASSWORD = "correct horse battery"
CHAT = -1001234567890
ARTIFACTS = Path(os.environ.get("NOTIFIER_ARTIFACTS", ROOT / "test-artifacts")) / "ui"


def wait(cond: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    need(chromium is not None and driver_path is not None, "Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(driver_path)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def shows(driver: Any, text: str, *, source: bool = False, tag: str = "body") -> None:
    """Wait until the page that a click led to has loaded and shows `text` (in its first `tag` element)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def found(d: Any) -> bool:
        try:
            return text in (d.page_source if source else d.find_element(By.TAG_NAME, tag).text)
        except Exception:  # the old page went away while we read it
            return False

    WebDriverWait(driver, 15).until(found)


def shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, max(700, min(int(height) + 120, 4000)))
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def test_a_person_logs_in_reads_the_timeline_and_retries_a_dead_letter(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    tg = ThreadedFake(FakeTelegram(chats={CHAT}))
    tg.fake.echo_path_404 = True  # a proxy that refuses everything: the message goes dead
    port = free_port()
    cfg = {
        "server": {"listen": f"127.0.0.1:{port}", "auth": {"bearer_token": TOKEN}},
        "storage": {"url": f"sqlite:///{tmp_path}/notifier.db"},
        "delivery": {"poll_interval": "100ms", "backoff_initial": "100ms", "max_attempts": 2},
        "receivers": [
            {"name": "oncall", "telegram": [{"bot_token": tg.fake.token, "chat_id": CHAT, "api_url": tg.fake.url}]}
        ],
        "routes": {"receiver": "oncall"},
        "ui": {"users": [{"name": "oncall", "password_hash": hash_password(PASSWORD)}], "timezone": "Europe/Berlin"},
    }
    (tmp_path / "notifier.yml").write_text(yaml.safe_dump(cfg))
    server = ServerProcess(tmp_path / "notifier.yml", port).start()
    base = server.url
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        group = make_group(2, severity="critical", name="BotDown", extra_labels={"exchange": "binance"})
        assert httpx.post(f"{base}/webhook/alertmanager", json=group, headers=auth).status_code == 202
        waiting = make_group(1, severity="warning", name="HighLatency")
        assert httpx.post(f"{base}/webhook/alertmanager", json=waiting, headers=auth).status_code == 202

        def dead_letters() -> int:
            r = httpx.get(f"{base}/api/v1/deliveries", params={"state": "dead"}, headers=auth)
            return len(r.json()["deliveries"])

        wait(lambda: dead_letters() == 2)

        # without a session: every page sends the browser to the login
        browser.get(f"{base}/ui/dead")
        assert browser.current_url == f"{base}/ui/login"
        shot(browser, "login")
        browser.find_element(By.NAME, "user").send_keys("oncall")
        browser.find_element(By.NAME, "password").send_keys("wrong password")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        shows(browser, "Wrong name or password.")
        browser.find_element(By.NAME, "user").clear()
        browser.find_element(By.NAME, "user").send_keys("oncall")
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        shows(browser, "Firing (2)")
        assert browser.current_url == f"{base}/ui"
        page = browser.find_element(By.TAG_NAME, "main").text
        assert "BotDown" in page and "2 firing for" in page and "2 dead letters" in page
        assert "Not Found: no route for POST /bot***/sendMessage" in page and tg.fake.token not in browser.page_source
        shot(browser, "now")

        browser.find_element(By.LINK_TEXT, "BotDown").click()
        shows(browser, "Timeline")
        timeline = browser.find_element(By.TAG_NAME, "main").text
        assert "decision queued" in timeline and "attempt dead" in timeline
        shot(browser, "timeline-dead")

        # a forged form: the session alone is not enough
        session = browser.get_cookie("notifier_session")["value"]
        forged = httpx.post(f"{base}/ui/dead/retry", data={"id": "all"}, cookies={"notifier_session": session})
        assert forged.status_code == 403
        assert httpx.post(f"{base}/ui/dead/retry", data={"id": "all"}).status_code == 401
        assert dead_letters() == 2

        tg.fake.echo_path_404 = False  # the proxy is fixed: retry
        browser.get(f"{base}/ui/dead")
        shot(browser, "dead-letters")
        rows = browser.find_elements(By.CSS_SELECTOR, "tbody tr")
        botdown = next(r for r in rows if "BotDown" in r.text)
        botdown.find_element(By.TAG_NAME, "button").click()
        shows(browser, "1 retried")
        wait(lambda: any("BotDown" in t for t in tg.texts()))
        assert dead_letters() == 1

        browser.get(f"{base}/ui")
        browser.find_element(By.LINK_TEXT, "BotDown").click()

        def sent_shown() -> bool:
            browser.refresh()
            return "attempt sent" in browser.find_element(By.TAG_NAME, "main").text

        wait(sent_shown)
        assert browser.find_elements(By.CSS_SELECTOR, "iframe[title='telegram message']")
        shot(browser, "timeline")

        browser.find_element(By.LINK_TEXT, "Search").click()
        shows(browser, "alert name or label value", source=True)
        browser.find_element(By.NAME, "q").send_keys("HighLatency")
        browser.find_element(By.CSS_SELECTOR, "form.card button").click()
        # a result, in the results' table of the page the search led to (read as it loads: never a stale element)
        shows(browser, "HighLatency", tag="tbody")
        shot(browser, "search")

        browser.set_window_size(390, 844)  # a phone at 3 a.m.
        browser.get(f"{base}/ui")
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width}px wide on a 390px screen"
        shot(browser, "now-phone")

        browser.find_element(By.CSS_SELECTOR, "header form button").click()  # log out
        shows(browser, "Log in to the notifier")
        browser.get(f"{base}/ui")
        assert browser.current_url == f"{base}/ui/login"
        assert json.loads(json.dumps(session))  # the old cookie is no session any more
        assert httpx.get(f"{base}/ui", cookies={"notifier_session": session}, follow_redirects=False).status_code == 302
    finally:
        server.stop()
        tg.stop()
