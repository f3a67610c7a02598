"""The web view against someone who should not get in or should not get further: an echoed path that would run a
script (in headless Chromium), guessing passwords, telling names apart by the answer's speed, a cookie kept after a
logout or a removed user, a foreign page posting the login, NUL characters in any URL (on PostgreSQL, which cannot
store one), right-to-left overrides in what a page shows, and the headers every page carries."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml

from notifier.ui import auth
from notifier.ui.auth import hash_password
from tests.helpers import TOKEN, ServerProcess, free_port, make_group, settings_from
from tests.notifier.harness import AUTH, post, running
from tests.notifier.ui.test_browser import browser, shows  # noqa: F401 -- the fixture

PASSWORD = "correct horse battery"


def config(users: tuple[str, ...] = ("oncall",)) -> dict[str, Any]:
    return {
        "server": {"auth": {"bearer_token": TOKEN}},
        "receivers": [{"name": "console", "log": [{}]}],
        "routes": {"receiver": "console"},
        "ui": {"users": [{"name": u, "password_hash": HASH} for u in users]},
    }


HASH = hash_password(PASSWORD)


async def login(client: httpx.AsyncClient, name: str = "oncall", password: str = PASSWORD) -> httpx.Response:
    return await client.post("/ui/login", data={"user": name, "password": password})


def test_a_script_in_an_echoed_path_or_a_label_never_runs(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    port = free_port()
    cfg = {**config(), "server": {"listen": f"127.0.0.1:{port}", "auth": {"bearer_token": TOKEN}}}
    cfg["storage"] = {"url": f"sqlite:///{tmp_path}/notifier.db"}
    (tmp_path / "notifier.yml").write_text(yaml.safe_dump(cfg))
    server = ServerProcess(tmp_path / "notifier.yml", port).start()
    try:
        hostile = make_group(1, name="Evil", extra_labels={"note": "<img src=x onerror=\"document.title='label'\">"})
        hostile["groupLabels"]["note"] = hostile["alerts"][0]["labels"]["note"]
        auth_headers = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.post(f"{server.url}/webhook/alertmanager", json=hostile, headers=auth_headers).status_code == 202
        browser.get(f"{server.url}/ui/login")
        browser.find_element(By.NAME, "user").send_keys("oncall")
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        shows(browser, "Evil")
        assert browser.title != "label"
        # a link in a chat to a page of the view, with a script in its path
        payload = "<img src=x onerror=\"document.title='path'\">"
        browser.get(f"{server.url}/ui/groups/{quote(payload, safe='')}")
        shows(browser, "No such alert group")
        assert browser.title != "path"
        assert browser.execute_script("return document.images.length") == 0
    finally:
        server.stop()


async def test_every_page_says_no_framing_no_sniffing_no_caching(sqlite_url: str) -> None:
    async with running(settings_from(config(), sqlite_url)) as (client, _rt):
        client.cookies.set("notifier_session", (await login(client)).cookies["notifier_session"], path="/ui")
        for path in ("/ui/login", "/ui", "/ui/dead", "/ui/search", "/ui/groups/" + "0" * 64):
            r = await client.get(path)
            csp = r.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["cache-control"] == "no-store"
        assert (await client.get("/healthz")).headers["x-content-type-options"] == "nosniff"


async def test_guessing_a_password_is_throttled_per_name_and_per_address(sqlite_url: str) -> None:
    async with running(settings_from(config(("oncall", "other")), sqlite_url)) as (client, _rt):
        codes = [(await login(client, password=f"guess {i}")).status_code for i in range(30)]
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
        right = await login(client)  # the right password, but the name is closed for now
        assert right.status_code == 429 and "Too many failed logins: try again in" in right.text
        assert "notifier_session" not in right.cookies
        # another name from the same address: open until the address has failed 20 times
        assert (await login(client, "other")).status_code == 303
        for i in range(15):
            await login(client, f"nobody{i}", "x")
        assert (await login(client, "other")).status_code == 429


async def test_a_password_is_checked_off_the_event_loop_and_an_unknown_name_costs_the_same(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    original = auth.check_password

    def counting(password: str, stored: str) -> bool:
        checked.append(stored)
        return original(password, stored)

    monkeypatch.setattr(auth, "check_password", counting)
    async with running(settings_from(config(), sqlite_url)) as (client, _rt):
        # a known and an unknown name: a scrypt hash is checked either way
        await login(client, "oncall", "wrong")
        await login(client, "nobody", "wrong")
        assert len(checked) == 2 and checked[0] == HASH and checked[1].startswith("scrypt$")
        # 16 logins at once, and /healthz among them: it is answered while the hashes are being checked
        done: list[str] = []

        async def one(i: int) -> None:
            await login(client, f"someone{i}", "wrong")
            done.append("login")

        async def health() -> None:
            await asyncio.sleep(0)
            assert (await client.get("/healthz")).status_code == 200
            done.append("healthz")

        await asyncio.gather(*(one(i) for i in range(16)), health())
        assert done.index("healthz") < done.count("login") - 1, done


async def test_a_session_ends_at_logout_and_with_its_user_everywhere(sqlite_url: str) -> None:
    async with running(settings_from(config(("oncall", "leaver")), sqlite_url)) as (client, _rt):
        cookie = (await login(client)).cookies["notifier_session"]
        leaver = (await login(client, "leaver")).cookies["notifier_session"]
        client.cookies.set("notifier_session", cookie, path="/ui")
        page = (await client.get("/ui")).text
        token = page.split('name="csrf" value="')[1].split('"')[0]
        assert (await client.post("/ui/logout", data={"csrf": token})).status_code == 303
    # started again on the same store: the logged-out cookie stays ended
    async with running(settings_from(config(("oncall", "leaver")), sqlite_url)) as (client, _rt):
        client.cookies.set("notifier_session", cookie, path="/ui")
        assert (await client.get("/ui")).status_code == 302
        client.cookies.set("notifier_session", leaver, path="/ui")
        assert (await client.get("/ui")).status_code == 200
    # the user is removed from ui.users: their session is over
    async with running(settings_from(config(("oncall",)), sqlite_url)) as (client, _rt):
        client.cookies.set("notifier_session", leaver, path="/ui")
        assert (await client.get("/ui")).status_code == 302


async def test_a_foreign_page_cannot_post_the_login_or_a_form(sqlite_url: str) -> None:
    async with running(settings_from(config(), sqlite_url)) as (client, _rt):
        foreign = {"Origin": "https://evil.example"}
        r = await client.post("/ui/login", data={"user": "oncall", "password": PASSWORD}, headers=foreign)
        assert r.status_code == 403 and "notifier_session" not in r.cookies
        ours = await client.post(
            "/ui/login", data={"user": "oncall", "password": PASSWORD}, headers={"Origin": "http://notifier"}
        )
        assert ours.status_code == 303


async def test_a_nul_or_a_bad_id_anywhere_is_a_clear_4xx(pg_url: str) -> None:
    async with running(settings_from(config(), pg_url)) as (client, _rt):
        client.cookies.set("notifier_session", (await login(client)).cookies["notifier_session"], path="/ui")
        page = (await client.get("/ui/dead")).text
        token = page.split('name="csrf" value="')[1].split('"')[0]
        for method, path in (
            ("GET", "/api/v1/groups/a%00b/timeline"),
            ("GET", "/api/v1/deliveries?before=a%00b"),
            ("POST", "/api/v1/deliveries/a%00b/retry"),
            ("GET", "/ui/search?q=a%00b"),
            ("GET", "/ui/groups/a%00b"),
        ):
            r = await client.request(method, path, headers=AUTH)
            assert r.status_code == 400 and "NUL" in r.json()["error"], path
        for method, path in (("GET", "/api/v1/groups/abc/timeline"), ("POST", "/api/v1/deliveries/abc/retry")):
            assert (await client.request(method, path, headers=AUTH)).status_code == 404
        assert (await client.get("/api/v1/deliveries?before=x", headers=AUTH)).status_code == 400
        form = await client.post("/ui/dead/retry", data={"id": "a\x00b", "csrf": token})
        assert form.status_code == 400
        assert (await client.get("/readyz")).status_code == 200  # the store was never asked


async def test_the_view_shows_no_direction_overrides(sqlite_url: str) -> None:
    async with running(settings_from(config(), sqlite_url)) as (client, _rt):
        client.cookies.set("notifier_session", (await login(client)).cookies["notifier_session"], path="/ui")
        g = make_group(1, name="Spoof", extra_labels={"bot": "\u202egnp.exe"})
        g["groupLabels"]["bot"] = "\u202egnp.exe"
        assert (await post(client, json.dumps(g))).status_code == 202
        page = (await client.get("/ui")).text
        assert "Spoof" in page and "gnp.exe" in page and "\u202e" not in page
        found = (await client.get("/ui/search", params={"q": "Spoof"})).text
        assert "\u202e" not in found


def test_sqlite_store_and_its_folder_are_private(tmp_path: Path) -> None:
    from notifier.settings import StorageSettings
    from notifier.store import Store

    database = tmp_path / "fresh" / "notifier.db"
    Store(StorageSettings(url=f"sqlite:///{database}"))
    assert database.stat().st_mode & 0o777 == 0o600
    assert database.parent.stat().st_mode & 0o777 == 0o700
    time.sleep(0)
