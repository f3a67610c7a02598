"""Secrets never leave the process: every secret key of the settings is known to the redactor (a new one that is
not fails here), matched in any case, and an Alertmanager that quotes the Authorization header back reaches no
answer, record, timeline or log line."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec
import pytest
from aiohttp import web
from sqlalchemy import select

from notifier.channels.registry import PLUGINS
from notifier.config import load_settings
from notifier.configtypes import Secret
from notifier.redaction import Redactor, protect, redact
from notifier.settings import Settings
from notifier.store.tables import action_log
from tests.fakes.slack import FakeSlack, signed
from tests.helpers import TOKEN, make_group, settings_from, wait_for
from tests.notifier.harness import AUTH, post, running

SECRET_NAME = re.compile(r"token|secret|password")
# URLs that carry a credential: a Slack incoming webhook (its path is the credential), a heartbeat's check URL
SECRET_URLS = {("SlackTarget", "webhook_url"), ("HeartbeatSettings", "url")}
FULL = """
server: {listen: 127.0.0.1:9095, auth: {bearer_token: SRV-bearer-0001}}
storage: {url: "postgresql://notifier:DB-password-0002@db/notifier"}
heartbeat: {url: "https://hc.example/ping/HB-url-0003"}
alertmanager: {urls: ["http://am:9093"], bearer_token: AM-bearer-0004}
charts: {prometheus_url: "http://prometheus:9090", bearer_token: CH-bearer-0021}
actions:
  allowed: {telegram: [7001], slack: [U0ALICE]}
  telegram: {mode: webhook, webhook_url: "https://n.example/telegram/updates", secret_token: TG-secret-token-0005}
  slack: {signing_secret: SL-signing-secret-0006}
ui:
  users: [{name: a, password_hash: "scrypt$16384$8$1$c2FsdA$UI-hash-0007"}]
  session_secret: UI-session-secret-00000000000008
receivers:
  - name: r
    telegram: [{bot_token: "123456:TG-bot-token-0009", chat_id: 42}]
    slack:
      - {webhook_url: "https://hooks.slack.com/services/T0/B0/SL-hook-0010"}
      - {bot_token: xoxb-SL-bot-0011, channel: "#x"}
    email: [{host: smtp, username: u, password: EM-password-0012, from: a@x.io, to: [b@x.io]}]
    ntfy: [{topic: NT-topic-0015, token: tk_NT-token-0016}]
    pushover: [{token: PO-app-token-0017, user: PO-user-key-0018}]
routes: {receiver: r}
"""
OTHER_AUTH = """
server: {listen: 127.0.0.1:9095, auth: {basic_auth: {username: u, password: SRV-basic-0013}}}
alertmanager: {urls: ["http://am:9093"], basic_auth: {username: u, password: AM-basic-0014}}
charts: {prometheus_url: "http://prometheus:9090", basic_auth: {username: u, password: CH-basic-0022}}
actions: {allowed: {telegram: [7001]}}
receivers: [{name: r, log: [{}], ntfy: [{topic: NT-topic-0019, username: u, password: NT-password-0020}]}]
routes: {receiver: r}
"""


def secret_fields(typ: Any, seen: set[Any] | None = None) -> set[tuple[str, str]]:
    """(struct, field) of every field of the settings whose name says it holds a secret, or a URL that does."""
    seen = set() if seen is None else seen
    out: set[tuple[str, str]] = set()
    if typ in seen:
        return out
    seen.add(typ)
    info = msgspec.inspect.type_info(typ)
    for f in getattr(info, "fields", ()):
        if f.name.endswith("_file"):
            continue
        if SECRET_NAME.search(f.name) or (typ.__name__, f.name) in SECRET_URLS:
            out.add((typ.__name__, f.name))
        for inner in _struct_types(f.type):
            out |= secret_fields(inner, seen)
    return out


def _struct_types(t: Any) -> list[type]:
    if isinstance(t, msgspec.inspect.StructType):
        return [t.cls]
    out: list[type] = []
    for attr in ("types", "item_type", "value_type"):
        inner = getattr(t, attr, None)
        for x in inner if isinstance(inner, tuple) else [inner] if inner is not None else []:
            out += _struct_types(x)
    return out


def values_of(node: Any, out: dict[tuple[str, str], Any]) -> None:
    if isinstance(node, msgspec.Struct):
        for name in node.__struct_fields__:
            value = getattr(node, name)
            if (type(node).__name__, name) in WANTED and value is not None:
                out[(type(node).__name__, name)] = value
            values_of(value, out)
    elif isinstance(node, list | tuple):
        for item in node:
            values_of(item, out)
    elif isinstance(node, dict):
        for item in node.values():
            values_of(item, out)


WANTED = secret_fields(Settings) | {f for p in PLUGINS.values() for f in secret_fields(p.target)}


def test_every_secret_key_of_the_settings_is_a_secret_the_redactor_knows(tmp_path: Path) -> None:
    found: dict[tuple[str, str], Any] = {}
    for i, text in enumerate((FULL, OTHER_AUTH)):
        (tmp_path / f"{i}.yml").write_text(text)
        settings = load_settings(tmp_path / f"{i}.yml")
        protect(settings)
        values_of(settings, found)
    # every secret key the settings have is set by the configs above: a new one must be added there
    assert set(found) == WANTED, f"secret keys not covered by this test's configs: {sorted(WANTED - set(found))}"
    for (struct, field), value in found.items():
        assert isinstance(value, Secret), f"{struct}.{field} is not a Secret"
        text = f"error: {value} / {str(value).lower()} / {str(value).upper()}"
        assert redact(text) == "error: *** / *** / ***", (struct, field)
    assert "DB-password-0002" not in redact("postgresql://notifier:DB-password-0002@db/notifier")


def test_redaction_is_case_insensitive_and_knows_encoded_forms() -> None:
    r = Redactor()
    r.add(["123456:Test-Token", "https://hooks.slack.com/services/T0/B0/Xyz/abc"])
    assert r("Unauthorized: token 123456:test-token") == "Unauthorized: token ***"
    assert r("POST /bot123456%3ATEST-TOKEN/sendMessage") == "POST /bot***/sendMessage"
    assert r("404 for /SERVICES/T0/B0/XYZ/ABC") == "404 for ***"


class EchoingAlertmanager:
    """An Alertmanager (or a proxy in front of one) that refuses a silence by quoting the request's headers."""

    def __init__(self) -> None:
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> EchoingAlertmanager:
        app = web.Application()
        app.router.add_get("/api/v2/alerts", self._no_list)
        app.router.add_get("/api/v2/silences", self._no_list)
        app.router.add_post("/api/v2/silences", self._refuse)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def _no_list(self, _request: web.Request) -> web.Response:
        return web.json_response([])

    async def _refuse(self, request: web.Request) -> web.Response:
        return web.Response(status=400, text=f"bad request; you sent Authorization: {request.headers['Authorization']}")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def test_an_alertmanager_quoting_the_credentials_back_reaches_no_one(
    store_url: str, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    am = await EchoingAlertmanager().start()
    signing = "0123456789abcdef0123456789abcdef"
    am_token = "Am-Bearer-Token-Quoted-Back"
    cfg = {
        "server": {"auth": {"bearer_token": TOKEN}},
        "delivery": {"poll_interval": "50ms"},
        "alertmanager": {"urls": [am.url], "bearer_token": am_token},
        "actions": {
            "allowed": {"slack": ["U0ALICE"]},
            "slack": {"signing_secret": signing, "response_urls": [f"{fake_slack.url}/respond/"]},
        },
        "receivers": [
            {
                "name": "s",
                "slack": [{"bot_token": fake_slack.token, "channel": "#trading-alerts", "api_url": fake_slack.api_url}],
            }
        ],
        "routes": {"receiver": "s"},
        "ui": {"users": [{"name": "oncall", "password_hash": "scrypt$16384$8$1$c2FsdA$aGFzaA"}]},
    }
    try:
        async with running(settings_from(cfg, store_url)) as (client, rt):
            g = make_group(1, severity="critical", name="BotDown")
            assert (await post(client, json.dumps(g))).status_code == 202
            await wait_for(lambda: len(fake_slack.posted) == 1)
            blocks = fake_slack.posted[0].blocks
            silence = next(
                e["value"]
                for b in blocks
                if b["type"] == "actions"
                for e in b["elements"]
                if "Silence" in e["text"]["text"]
            )
            payload = {
                "type": "block_actions",
                "user": {"id": "U0ALICE", "username": "alice"},
                "channel": {"id": "C0TRADING"},
                "trigger_id": "t1",
                "response_url": fake_slack.response_url("1"),
                "actions": [{"action_id": "notifier-1", "value": silence, "type": "button"}],
            }
            body = urlencode({"payload": json.dumps(payload)}).encode()
            await client.post("/slack/actions", content=body, headers=signed(signing, body))
            await wait_for(lambda: len(fake_slack.responses) == 1)
            said = fake_slack.responses[0]["text"]
            assert said.startswith("Could not create the silence: Alertmanager refused it: ") and "***" in said
            async with rt.store.begin() as conn:
                logged = " ".join(str(d) for (d,) in await conn.execute(select(action_log.c.detail)))
            gid = hashlib.sha256(f"{g['receiver']}\x00{g['groupKey']}".encode()).hexdigest()
            timeline = (await client.get(f"/api/v1/groups/{gid}/timeline", headers=AUTH)).text
            seen = "\n".join([said, logged, timeline, caplog.text])
            assert am_token.lower() not in seen.lower()
            assert "Am-Bearer" not in seen
    finally:
        await am.stop()
