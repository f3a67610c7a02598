"""A new channel is one module, one template and one registry line. This test writes a Discord-shaped channel the
way a contributor would — its target's settings, its rendering entry, its sender, its PLUGIN record — adds it to
the registry, and nothing else: the config accepts `discord:` targets (with key paths in its errors and its secret
redacted), the runtime builds and delivers through it, the metrics have its series, and `notifier render` shows it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from notifier.channels import ChannelPlugin, RateRule, Refusal, Shown, failure, refusal_of_status
from notifier.channels.registry import PLUGINS
from notifier.clock import Clock
from notifier.config import load_settings_from_mapping
from notifier.configtypes import Strict, secret
from notifier.domain import DeliveryReceipt, Message
from notifier.errors import ConfigError
from notifier.templates import Renderer, Template
from tests.helpers import TOKEN, fixture_bytes, wait_for
from tests.notifier.harness import delivery_rows, post, running

# ---- the module a contributor writes (notifier/channels/discord.py) ------------------------------------------------
TEMPLATE = Template("discord", "text", "text.j2")  # a real channel ships its own template file beside the others
MAX_CONTENT = 2000  # Discord: a message's content is at most 2,000 characters


class DiscordTarget(Strict, kw_only=True):
    webhook_url: str | None = None
    webhook_url_file: str | None = None

    def __post_init__(self) -> None:
        self.webhook_url = secret(self.webhook_url, self.webhook_url_file, "webhook_url", required=True)


def render(renderer: Renderer, message: Message, now: float) -> list[str]:
    text = renderer.template(TEMPLATE).render(renderer.context(message, now)).strip()
    return [text[:MAX_CONTENT]]


class DiscordChannel:
    name = "discord"

    def __init__(self, key: str, target: DiscordTarget, renderer: Renderer, clock: Clock) -> None:
        self._url = str(target.webhook_url)
        self._renderer = renderer
        self._clock = clock

    def rate_rules(self) -> list[RateRule]:
        return [RateRule(f"discord:{hash(self._url)}", 5, 2.0)]

    async def send(self, message: Message) -> DeliveryReceipt:
        (text,) = render(self._renderer, message, self._clock.now())
        try:
            async with aiohttp.ClientSession() as session, session.post(self._url, json={"content": text}) as resp:
                if resp.status < 400:
                    return DeliveryReceipt(ref=None)
                refusal = refusal_of_status(resp.status)  # the classification every channel shares
                wait = float((await resp.json())["retry_after"]) if refusal is Refusal.RATE_LIMITED else None
                raise failure(refusal, f"Discord answered {resp.status}", retry_after=wait)
        except aiohttp.ClientError as exc:
            raise failure(Refusal.UNAVAILABLE, f"Discord unreachable: {type(exc).__name__}") from None

    async def edit(self, message: Message) -> DeliveryReceipt:
        raise failure(Refusal.PERMANENT, "this channel cannot edit a message it sent")

    async def aclose(self) -> None:
        return None


def show(renderer: Renderer, message: Message, now: float) -> list[Shown]:
    return [Shown(text=text, raw=text) for text in render(renderer, message, now)]


PLUGIN = ChannelPlugin(name="discord", target=DiscordTarget, templates=(TEMPLATE,), build=DiscordChannel, show=show)
# ---- and its line in notifier/channels/registry.py -----------------------------------------------------------------


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PLUGINS, "discord", PLUGIN)


@pytest.fixture
async def discord() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A Discord-like webhook endpoint on loopback, keeping what it gets."""
    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        if len(body.get("content", "")) > MAX_CONTENT:
            return web.json_response({"message": "Invalid Form Body"}, status=400)
        got.append(body)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/api/webhooks/123/s3cr3t-token", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/api/webhooks/123/s3cr3t-token", got
    await runner.cleanup()


def config(url: str, store: str) -> dict[str, Any]:
    return {
        "server": {"auth": {"bearer_token": TOKEN}},
        "storage": {"url": store},
        "delivery": {"poll_interval": "50ms"},
        "receivers": [
            {"name": "team", "discord": [{"webhook_url": url}], "templates": {"discord": {"inline": "D: {{ title }}"}}}
        ],
        "routes": {"receiver": "team"},
    }


def test_the_config_takes_its_targets_with_key_paths_in_errors() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings_from_mapping({"receivers": [{"name": "t", "discord": [{}]}], "routes": {"receiver": "t"}})
    assert info.value.path == "receivers[0].discord[0].webhook_url"
    with pytest.raises(ConfigError) as info:
        receivers = [{"name": "t", "templates": {"discrod": {"inline": "x"}}}]
        load_settings_from_mapping({"receivers": receivers, "routes": {"receiver": "t"}})
    assert info.value.path == "receivers[0].templates.discrod" and "discord" in info.value.reason


async def test_it_is_built_delivered_through_counted_and_rendered(
    discord: tuple[str, list[dict[str, Any]]], sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, got = discord
    settings = load_settings_from_mapping(config(url, sqlite_url), env={})
    async with running(settings) as (client, rt):
        assert (await post(client, fixture_bytes("01-critical-firing-two-alerts.json"))).status_code == 202
        await wait_for(lambda: len(got) == 1)
        assert got[0]["content"] == "D: CriticalDrawdown"  # the receiver's own template for the new channel
        rows = await delivery_rows(rt)
        assert [(r["channel"], r["target"], r["state"]) for r in rows] == [("discord", "team/discord/0", "sent")]
        metrics = (await client.get("/metrics")).text
        assert 'notifier_outbox_pending{channel="discord"}' in metrics
        assert 'notifier_deliveries_total{channel="discord",outcome="sent",receiver="team"} 1.0' in metrics
    from notifier.__main__ import main

    path = tmp_path / "n.yml"
    path.write_text(json.dumps(config(url, sqlite_url)))  # JSON is YAML
    assert main(["--config", str(path), "render", "--receiver", "team", "--json", str(_fixture())]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == [{"target": "team/discord/0", "channel": "discord", "messages": ["D: CriticalDrawdown"]}]
    assert main(["check-config", str(path)]) == 0
    from notifier.redaction import redact

    assert redact(f"POST {url} failed") == "POST *** failed"  # its secret is redacted like every channel's


def _fixture() -> Path:
    from tests.helpers import FIXTURES

    return FIXTURES / "01-critical-firing-two-alerts.json"
