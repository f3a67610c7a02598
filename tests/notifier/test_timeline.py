"""Why a message went or did not, through the real path (webhooks, the store, the worker, the fake Telegram), on
both stores: every decision and attempt is on the group's timeline with its reason, as the API, the CLI and the
web view show it."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from notifier.__main__ import main
from notifier.clock import FrozenClock
from tests.fakes.telegram import FakeTelegram
from tests.helpers import TOKEN, berlin, make_group, settings_from, wait_for
from tests.notifier.harness import AUTH, delivery_rows, post, running

CHAT = -1001234567890


def config(tg: FakeTelegram, **extra: Any) -> dict[str, Any]:
    return {
        "server": {"auth": {"bearer_token": TOKEN}},
        "delivery": {"poll_interval": "50ms", "backoff_initial": "1s", "backoff_max": "5s", "max_attempts": 3},
        "receivers": [{"name": "tg", "telegram": [{"bot_token": tg.token, "chat_id": CHAT, "api_url": tg.url}]}],
        "routes": {"receiver": "tg"},
        **extra,
    }


def gh(group: dict[str, Any]) -> str:
    return hashlib.sha256(f"{group['receiver']}\x00{group['groupKey']}".encode()).hexdigest()


async def timeline(client: Any, group: dict[str, Any]) -> list[dict[str, Any]]:
    r = await client.get(f"/api/v1/groups/{gh(group)}/timeline", headers=AUTH)
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()["events"]
    return events


def lines(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["kind"], e["outcome"], e["text"]) for e in events]


async def test_quiet_hours_defer_then_send_at_the_end_of_the_window(
    store_url: str, fake_telegram: FakeTelegram
) -> None:
    tg = fake_telegram
    cfg = config(
        tg,
        quiet_hours={"night": {"location": "Europe/Berlin", "times": [{"start": "22:00", "end": "07:00"}]}},
        routes={"receiver": "tg", "quiet_hours": {"schedule": "night", "mode": "defer"}},
    )
    clock = FrozenClock(berlin(26, 3, 12))
    async with running(settings_from(cfg, store_url), clock=clock) as (client, _rt):
        group = make_group(1, severity="warning", name="NightAlert")
        assert (await post(client, json.dumps(group))).json()["queued"] == 1
        events = await timeline(client, group)
        assert [(k, o) for k, o, _ in lines(events)] == [("decision", "deferred")]
        assert events[0]["subject"] == "tg"
        assert events[0]["text"] == (
            "deferred until 2026-11-26 07:00 Europe/Berlin (quiet hours 'night', the root route): 1 new, "
            "for tg/telegram/0"
        )
        await clock.set(berlin(26, 7, 0))
        await wait_for(lambda: len(tg.sent) == 1)
        events = await wait_events(client, group, 2)
        sent = events[1]
        assert (sent["kind"], sent["outcome"], sent["subject"]) == ("attempt", "sent", "tg/telegram/0")
        assert sent["at"].startswith("2026-11-26T06:00:00")  # 07:00 in Berlin
        assert sent["text"].startswith("sent to tg/telegram/0 (provider's reference ")

        # Alertmanager sends the same group again: unchanged since the state queued at 03:12 (02:12 UTC)
        await clock.advance(600)
        again = make_group(1, severity="warning", name="NightAlert")
        again["alerts"][0]["annotations"]["summary"] = "still the same alert"  # a new notification, same states
        assert (await post(client, json.dumps(again))).json()["suppressed"] == {"unchanged": 1}
        events = await timeline(client, group)
        assert events[-1]["outcome"] == "unchanged"
        assert events[-1]["text"] == (
            "unchanged since 2026-11-26 02:12: nothing new to tell (1 still firing; repeat_interval 4h, the root route)"
        )


async def wait_events(
    client: Any, group: dict[str, Any], n: int, last: Callable[[dict[str, Any]], bool] | None = None
) -> list[dict[str, Any]]:
    """The group's timeline once it has `n` events (and its last one is what `last` wants)."""
    got: list[dict[str, Any]] = []

    async def enough() -> bool:
        nonlocal got
        got = await timeline(client, group)
        return len(got) >= n and (last is None or last(got[-1]))

    await wait_for(enough, timeout=15)
    return got


async def test_a_429_shows_the_wait_and_a_dead_letter_the_providers_answer_without_the_token(
    store_url: str, fake_telegram: FakeTelegram
) -> None:
    tg = fake_telegram
    async with running(settings_from(config(tg), store_url)) as (client, _rt):
        tg.fail_next(1, 429, "Too Many Requests: retry after 2", retry_after=2)
        group = make_group(1, name="Throttled")
        assert (await post(client, json.dumps(group))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1, timeout=20)
        events = await wait_events(client, group, 3)
        retry = next(e for e in events if e["outcome"] == "retry")
        assert retry["text"] == (
            "attempt 1 to tg/telegram/0 failed: Telegram rate limit: retry after 2s; next try in 2s"
        )
        assert events[-1]["outcome"] == "sent"

        tg.echo_path_404 = True
        dead_group = make_group(1, name="Misrouted")
        assert (await post(client, json.dumps(dead_group))).status_code == 202
        events = await wait_events(client, dead_group, 2, lambda e: e["outcome"] == "dead")
        dead = events[-1]
        assert "Not Found: no route for POST /bot***/sendMessage" in dead["text"]
        assert tg.token not in json.dumps(events)


async def test_a_storm_shows_the_summary_that_folded_each_group(sqlite_url: str, fake_telegram: FakeTelegram) -> None:
    tg = fake_telegram
    clock = FrozenClock(berlin(26, 12, 0))
    cfg = config(tg, storm={"threshold": 2})
    async with running(settings_from(cfg, sqlite_url), clock=clock) as (client, rt):
        groups = [make_group(1, name=f"Storm{i}") for i in range(6)]
        for g in groups:
            assert (await post(client, json.dumps(g))).status_code == 202

        async def folded() -> bool:
            rows = await delivery_rows(rt)
            return any(r["group_key"].startswith("storm:") for r in rows)

        await wait_for(folded, timeout=15)
        summary = next(r for r in await delivery_rows(rt) if r["group_key"].startswith("storm:"))
        folded_lines = []
        for g in groups:
            events = await timeline(client, g)
            folded_lines += [e for e in events if e["outcome"] == "folded"]
        assert folded_lines, "no group's timeline tells of the storm"
        for e in folded_lines:
            assert e["text"].startswith(f"folded into the storm summary {summary['id']} on tg/telegram/0: ")


async def test_notifier_explain_prints_the_timeline(
    sqlite_url: str, fake_telegram: FakeTelegram, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tg = fake_telegram
    settings = settings_from(config(tg), sqlite_url)
    group = make_group(1, name="Explained")
    async with running(settings) as (client, _rt):
        assert (await post(client, json.dumps(group))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        await wait_events(client, group, 2)
    cfg_file = tmp_path / "notifier.yml"
    cfg_file.write_text(json.dumps({**config(tg), "storage": {"url": sqlite_url}}))
    for args in (["--group", group["groupKey"]], ["--alertname", "Explained", "--since", "1h"]):
        assert await asyncio.to_thread(main, ["explain", "--config", str(cfg_file), *args]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0] == f"group {group['groupKey']}  ({gh(group)})"
        assert [line.split()[2:4] for line in out[1:]] == [["decision", "queued"], ["attempt", "sent"]]
        assert out[1].endswith("tg: queued for tg/telegram/0: 1 new (the root route)")
    assert await asyncio.to_thread(main, ["explain", "--config", str(cfg_file), "--alertname", "Nothing"]) == 1
