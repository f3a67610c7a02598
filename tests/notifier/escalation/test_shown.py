"""How people see an escalation chain: the config refuses a chain that could not work (naming the key), /why and
/status answer from the timeline only for those who may act on the group, and the web view shows the chain."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import select

from notifier.clock import FrozenClock
from notifier.config import load_settings_from_mapping
from notifier.errors import ConfigError
from notifier.store.tables import escalations
from notifier.ui.auth import hash_password
from tests.fakes.push import FakeNtfy, FakePushover
from tests.fakes.telegram import FakeTelegram
from tests.helpers import make_group, settings_from, wait_for
from tests.notifier.escalation.chain import (
    CRITICAL,
    TWO_STEPS,
    config,
    critical,
    step,
)
from tests.notifier.harness import post, running


def test_the_config_refuses_a_step_to_an_unknown_receiver_too_short_a_wait_or_steps_out_of_order() -> None:
    base = {"receivers": [{"name": "a", "log": [{}]}, {"name": "b", "log": [{}]}]}

    def load(steps: list[dict[str, Any]], **route: Any) -> None:
        routes = {
            "receiver": "a",
            "routes": [{"matchers": [CRITICAL], "receivers": ["a"], "escalation": steps, **route}],
        }
        load_settings_from_mapping({**base, "routes": routes}, env={})

    with pytest.raises(ConfigError) as info:
        load([{"after": "5m", "receivers": ["loud"]}])
    assert info.value.path == "routes.routes[0].escalation[0].receivers" and "unknown receiver 'loud'" in str(
        info.value
    )
    with pytest.raises(ConfigError) as info:
        load([{"after": "5s", "receivers": ["b"]}])
    assert "from 10s to 7d" in str(info.value) and "escalation[0].after" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load([{"after": "10m", "receivers": ["b"]}, {"after": "5m", "receivers": ["b"]}])
    assert "escalation[1].after" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load([{"after": "5m", "receivers": ["b"], "quiet_hours": "respect"}])
    assert info.value.path == "routes.routes[0].escalation[0].quiet_hours"
    load([{"after": "10s", "receivers": ["b"]}, {"after": "7d", "receivers": ["a", "b"]}])


async def test_why_and_status_answer_from_the_timeline_only_for_who_may_act(
    sqlite_url: str, fake_telegram: FakeTelegram, ntfy: FakeNtfy, pushover: FakePushover
) -> None:
    tg = fake_telegram
    clock = FrozenClock(time.time())
    data = config(tg, ntfy, pushover, TWO_STEPS)
    data["receivers"].append(
        {
            "name": "other-team",
            "telegram": [{"bot_token": tg.token, "chat_id": -1001234567890, "api_url": tg.url}],
            "actions": {"allowed": {"telegram": [7002]}},
        }
    )
    data["routes"]["routes"].insert(0, {"matchers": ['team="other"'], "receivers": ["other-team"]})
    data["watchdog"] = {"receivers": ["oncall"]}
    async with running(settings_from(data, sqlite_url), clock=clock) as (client, rt):
        watchdog = make_group(1, severity="none", name="Watchdog", group_key='{}:{alertname="Watchdog"}')
        watchdog["alerts"][0]["labels"] = {"alertname": "Watchdog", "prometheus": "prometheus-1"}
        assert (await post(client, json.dumps(watchdog))).status_code == 202
        assert (await post(client, critical())).status_code == 202
        other = make_group(1, severity="critical", name="CriticalDrawdown", extra_labels={"team": "other"})
        other["groupKey"] = '{}:{alertname="CriticalDrawdown", team="other"}'
        other["commonLabels"]["team"] = "other"
        assert (await post(client, json.dumps(other))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 2)
        await step(rt, clock, 0)
        await step(rt, clock, 31)
        await wait_for(lambda: len(ntfy.published) == 1)

        tg.say("/why CriticalDrawdown", chat_id=42, user_id=7001, username="alice")
        await wait_for(lambda: len(tg.sent) == 3, timeout=15)
        why = tg.sent[2].text
        assert 'bot="bot-7"' in why and 'team="other"' not in why  # only the group alice may act on
        assert "queued: new alerts" in why or "queued" in why
        assert "escalated to loud (step 1 of 2): not acknowledged for 31s" in why

        tg.say("/why CriticalDrawdown", chat_id=-1001234567890, user_id=7002, username="bob")
        await wait_for(lambda: len(tg.sent) == 4, timeout=15)
        bobs = tg.sent[3].text
        assert 'team="other"' in bobs and 'bot="bot-7"' not in bobs

        tg.say("/why CriticalDrawdown", chat_id=42, user_id=7999, username="mallory")
        await wait_for(lambda: len(tg.sent) == 5, timeout=15)
        assert tg.sent[4].text == "You may not ask the notifier (your Telegram user id is 7999)."

        tg.say("/status", chat_id=42, user_id=7001, username="alice")
        await wait_for(lambda: len(tg.sent) == 6, timeout=15)
        status = tg.sent[5].text
        assert "⏫ escalating" in status and 'bot="bot-7"' in status and "step 2 (backup) at" in status
        assert 'team="other"' not in status
        assert "🐕 Watchdog from prometheus-1: last seen" in status


async def test_the_web_view_shows_the_chain_of_a_group(
    sqlite_url: str, fake_telegram: FakeTelegram, ntfy: FakeNtfy, pushover: FakePushover
) -> None:
    tg = fake_telegram
    clock = FrozenClock(time.time())
    data = config(tg, ntfy, pushover, TWO_STEPS)
    data["ui"] = {"users": [{"name": "oncall", "password_hash": hash_password("correct horse battery")}]}
    async with running(settings_from(data, sqlite_url), clock=clock) as (client, rt):
        assert (await post(client, critical())).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        await step(rt, clock, 0)
        await step(rt, clock, 31)
        await wait_for(lambda: len(ntfy.published) == 1)
        async with rt.store.begin() as conn:
            group = (await conn.execute(select(escalations.c.group_hash))).scalar()
        login = await client.post("/ui/login", data={"user": "oncall", "password": "correct horse battery"})
        assert login.status_code == 303
        page = (await client.get(f"/ui/groups/{group}")).text
        assert "<h2>Escalation</h2>" in page and "running" in page
        assert "step 2 (backup) due at" in page and '<td data-label="Paged">loud</td>' in page
        assert "escalated to loud (step 1 of 2)" in page  # and the timeline says it
