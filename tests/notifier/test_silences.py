"""Silences through Alertmanager's API v2, against a real Alertmanager 0.25: created for a group's labels (amtool
sees them), listed, expired; a peer that is down gives way to the next; a refusal and a cluster that is down are
told in words, without the credentials."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from notifier.settings import AlertmanagerSettings
from notifier.silences import Matcher, SilenceClient, SilenceError, silence_link
from tests.helpers import binary, free_port, run

CONFIG = """
route:
  receiver: nowhere
receivers:
  - name: nowhere
"""


@pytest.fixture
def am_url(tmp_path: Path, alertmanager: Callable[[Path], str]) -> str:
    config = tmp_path / "am.yml"
    config.write_text(CONFIG)
    return alertmanager(config)


def _client(urls: list[str], **extra: object) -> SilenceClient:
    return SilenceClient(msgspec.convert({"urls": urls, **extra}, AlertmanagerSettings))


def _amtool_query(url: str) -> list[dict[str, object]]:
    out = run(binary("amtool"), "silence", "query", "--alertmanager.url", url, "-o", "json")
    assert out.returncode == 0, out.stderr
    result: list[dict[str, object]] = json.loads(out.stdout or "[]")
    return result


async def test_a_silence_is_made_for_the_labels_seen_by_amtool_and_expired(am_url: str) -> None:
    client_settings = msgspec.convert(
        {"urls": [am_url], "external_url": "https://am.example.org"}, AlertmanagerSettings
    )
    client = SilenceClient(client_settings)
    now = time.time()
    try:
        labels = {"alertname": "BotDown", "bot": "grid-btc", "severity": "critical"}
        matchers = [Matcher(k, v) for k, v in labels.items()]
        sid = await client.create(matchers, now, now + 4 * 3600, "@alice via Telegram", "silenced from message 42")
        found = _amtool_query(am_url)
        assert [s["id"] for s in found] == [sid]
        assert found[0]["createdBy"] == "@alice via Telegram"
        made = {(m["name"], m["value"], m["isEqual"], m["isRegex"]) for m in found[0]["matchers"]}  # type: ignore[attr-defined]
        assert made == {(k, v, True, False) for k, v in labels.items()}

        active = await client.active()
        assert [s.id for s in active] == [sid] and active[0].labels() == labels
        assert abs(active[0].endsAt.timestamp() - (now + 4 * 3600)) < 1
        assert silence_link(client_settings, sid) == f"https://am.example.org/#/silences/{sid}"

        await client.expire(sid)
        assert _amtool_query(am_url) == []  # amtool lists active silences only
        assert json.loads(run("curl", "-s", f"{am_url}/api/v2/silence/{sid}").stdout)["status"]["state"] == "expired"
        assert await client.active() == []
    finally:
        await client.aclose()


async def test_a_peer_that_is_down_gives_way_to_the_next(am_url: str) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    client = _client([down, am_url])
    now = time.time()
    try:
        sid = await client.create([Matcher("alertname", "X")], now, now + 3600, "@bob via Slack", "test")
        assert [s["id"] for s in _amtool_query(am_url)] == [sid]
    finally:
        await client.aclose()


async def test_a_refusal_and_a_cluster_that_is_down_are_told_without_credentials(am_url: str) -> None:
    now = time.time()
    client = _client([am_url], bearer_token="s3cret-token")
    try:
        with pytest.raises(SilenceError, match=r"Alertmanager refused it: .*\(HTTP 400\)"):
            await client.create([Matcher("alertname", "X")], now, now - 60, "@a", "ends before it starts")
        with pytest.raises(SilenceError, match="at least one matcher"):
            await client.create([], now, now + 60, "@a", "")
    finally:
        await client.aclose()
    ports = [free_port(), free_port()]
    down = _client([f"http://user:pw-in-url@127.0.0.1:{p}" for p in ports], bearer_token="s3cret-token")
    try:
        with pytest.raises(SilenceError) as caught:
            await down.create([Matcher("alertname", "X")], now, now + 60, "@a", "")
        text = str(caught.value)
        assert text.startswith("no Alertmanager answered: ")
        assert all(f"127.0.0.1:{p}" in text for p in ports)
        assert "pw-in-url" not in text and "s3cret-token" not in text
    finally:
        await down.aclose()
