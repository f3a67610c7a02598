"""The web view over HTTP (in process): nothing without a login, a POST without its CSRF token refused, a wrong
password refused; logged in, the pages show what fires, what waits and why, a group's timeline with the message as
sent, and dead letters whose Retry sends them."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from notifier.ui.auth import check_password, hash_password
from tests.fakes.telegram import FakeTelegram
from tests.helpers import TOKEN, make_group, settings_from, wait_for
from tests.notifier.harness import post, running

PASSWORD = "correct horse battery"


def config(tg: FakeTelegram) -> dict[str, Any]:
    return {
        "server": {"auth": {"bearer_token": TOKEN}},
        "delivery": {"poll_interval": "50ms", "backoff_initial": "100ms", "backoff_max": "200ms", "max_attempts": 2},
        "receivers": [
            {"name": "tg", "telegram": [{"bot_token": tg.token, "chat_id": -1001234567890, "api_url": tg.url}]}
        ],
        "routes": {"receiver": "tg"},
        "ui": {"users": [{"name": "oncall", "password_hash": hash_password(PASSWORD)}], "timezone": "Europe/Berlin"},
    }


def csrf(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, "no CSRF token in the page"
    return m.group(1)


async def login(client: httpx.AsyncClient) -> str:
    r = await client.post("/ui/login", data={"user": "oncall", "password": PASSWORD})
    assert r.status_code == 303 and r.headers["location"] == "/ui"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/ui" in cookie
    return str(r.cookies["notifier_session"])


def test_password_hashes_check_only_their_password() -> None:
    stored = hash_password(PASSWORD)
    assert stored.startswith("scrypt$") and PASSWORD not in stored
    assert check_password(PASSWORD, stored) and not check_password(PASSWORD + "!", stored)
    assert not check_password(PASSWORD, "scrypt$broken")


async def test_nothing_without_a_login_and_no_form_without_its_token(
    sqlite_url: str, fake_telegram: FakeTelegram
) -> None:
    async with running(settings_from(config(fake_telegram), sqlite_url)) as (client, _rt):
        for path in ("/ui", "/ui/dead", "/ui/search", "/ui/groups/" + "0" * 64):
            r = await client.get(path)
            assert (r.status_code, r.headers.get("location")) == (302, "/ui/login"), path
        for path, data in (("/ui/dead/retry", {"id": "all"}), ("/ui/logout", {})):
            assert (await client.post(path, data=data)).status_code == 401
        wrong = await client.post("/ui/login", data={"user": "oncall", "password": "guess"})
        assert wrong.status_code == 401 and "Wrong name or password." in wrong.text
        assert "notifier_session" not in wrong.cookies

        session = await login(client)
        client.cookies.set("notifier_session", session, path="/ui")
        assert (await client.get("/ui")).status_code == 200
        no_token = await client.post("/ui/dead/retry", data={"id": "all"})
        forged = await client.post("/ui/dead/retry", data={"id": "all", "csrf": "x" * 43})
        assert (no_token.status_code, forged.status_code) == (403, 403)
        # a made-up cookie is no session
        client.cookies.set("notifier_session", session[:-4] + "AAAA", path="/ui")
        assert (await client.get("/ui")).status_code == 302


async def test_the_pages_tell_what_fires_what_waits_and_why_and_retry_sends_a_dead_letter(
    store_url: str, fake_telegram: FakeTelegram
) -> None:
    tg = fake_telegram
    async with running(settings_from(config(tg), store_url)) as (client, _rt):
        client.cookies.set("notifier_session", await login(client), path="/ui")
        tg.echo_path_404 = True  # a proxy that refuses everything: the message goes dead
        group = make_group(2, severity="critical", name="BotDown", extra_labels={"exchange": "binance"})
        assert (await post(client, json.dumps(group))).status_code == 202

        async def dead() -> bool:
            return "BotDown" in (await client.get("/ui/dead")).text

        await wait_for(dead, timeout=15)
        overview = (await client.get("/ui")).text
        assert "BotDown" in overview and "2 firing for" in overview and "critical" in overview
        assert "1 dead letters" in overview and "Not Found: no route for POST /bot***/sendMessage" in overview
        assert tg.token not in overview

        page = (await client.get("/ui/dead")).text
        assert tg.token not in page
        delivery = re.search(r'name="id" value="([0-9A-Z]{26})"', page)
        assert delivery is not None
        tg.echo_path_404 = False
        r = await client.post("/ui/dead/retry", data={"id": delivery.group(1), "csrf": csrf(page)})
        assert r.status_code == 303 and r.headers["location"] == "/ui/dead?done=1"
        await wait_for(lambda: len(tg.sent) == 1)

        link = re.search(r'href="/ui/groups/([0-9a-f]{64})"', overview)
        assert link is not None
        timeline = ""

        async def sent_recorded() -> bool:  # the provider answered; the outcome is committed just after
            nonlocal timeline
            timeline = (await client.get(f"/ui/groups/{link.group(1)}")).text
            return "attempt</b> sent" in timeline

        await wait_for(sent_recorded)
        for words in ("decision</b> queued", "attempt</b> dead", "attempt</b> sent", "action</b> retry"):
            assert words in timeline, words
        assert "The messages as sent" in timeline and 'title="telegram message"' in timeline
        assert tg.token not in timeline

        found = (await client.get("/ui/search", params={"q": "BotDown", "since": "1h"})).text
        assert f"/ui/groups/{link.group(1)}" in found
        none = (await client.get("/ui/search", params={"q": "NoSuchAlert"})).text
        assert "No group with events in that time matching" in none
