"""What the escalation tests share: the notifier's settings with a chain of steps to ntfy and Pushover, a critical
group and its resolve, and stepping the frozen clock with the ticker's pass run by the test."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import and_, func, or_, select

from notifier.clock import FrozenClock
from notifier.runtime import Runtime
from notifier.store.tables import deliveries, timeline
from tests.fakes.push import FakeNtfy, FakePushover
from tests.fakes.telegram import FakeTelegram
from tests.helpers import TOKEN, make_group, wait_for
from tests.notifier.actions.chat import callback_buttons
from tests.notifier.harness import post

CRITICAL = 'severity="critical"'


def config(
    tg: FakeTelegram, ntfy: FakeNtfy, pushover: FakePushover, steps: list[dict[str, Any]], **route: Any
) -> dict[str, Any]:
    return {
        "server": {"auth": {"bearer_token": TOKEN}},
        "delivery": {"poll_interval": "50ms", "backoff_initial": "100ms", "backoff_max": "1s"},
        "alertmanager": {"urls": ["http://127.0.0.1:9"], "external_url": "http://am.example"},
        "actions": {"allowed": {"telegram": [7001]}, "telegram": {"poll_timeout": "1s", "lease": "10s"}},
        "receivers": [
            {"name": "oncall", "telegram": [{"bot_token": tg.token, "chat_id": 42, "api_url": tg.url}]},
            {"name": "loud", "ntfy": [{"server": ntfy.url, "topic": "trading-oncall", "token": ntfy.token}]},
            {"name": "backup", "pushover": [{"token": pushover.token, "user": pushover.user, "api_url": pushover.url}]},
        ],
        "routes": {
            "receiver": "oncall",
            "routes": [{"matchers": [CRITICAL], "receivers": ["oncall"], "escalation": steps, **route}],
        },
    }


TWO_STEPS = [{"after": "30s", "receivers": ["loud"]}, {"after": "90s", "receivers": ["backup"]}]


def critical(n: int = 1) -> str:
    return json.dumps(make_group(n, severity="critical", name="CriticalDrawdown", group_key='{}:{bot="bot-7"}'))


def resolved(n: int = 1) -> str:
    return json.dumps(
        make_group(n, status="resolved", severity="critical", name="CriticalDrawdown", group_key='{}:{bot="bot-7"}')
    )


async def lines(rt: Runtime, kind: str = "escalation") -> list[str]:
    async with rt.store.begin() as conn:
        q = select(timeline.c.text).where(timeline.c.kind == kind).order_by(timeline.c.id)
        return [str(t) for t in (await conn.execute(q)).scalars()]


async def delivered(rt: Runtime, now: float) -> bool:
    """Whether the worker is done with every message due at `now` (sent, or waiting for a later try)."""
    async with rt.store.begin() as conn:
        q = select(func.count()).where(
            or_(
                deliveries.c.state == "sending",
                and_(deliveries.c.state == "pending", deliveries.c.next_attempt_at <= now),
            )
        )
        return not await conn.scalar(q)


async def step(rt: Runtime, clock: FrozenClock, seconds: float) -> None:
    """Time passes; once the worker has done what was due, the escalation ticker makes its pass."""
    await clock.advance(seconds)
    await wait_for(lambda: delivered(rt, clock.now()))
    assert rt.escalator is not None
    await rt.escalator.run_once()


async def first_message(client: httpx.AsyncClient, rt: Runtime, tg: FakeTelegram, clock: FrozenClock) -> str:
    """A critical group's first message goes out, and its chain starts: the timeline's line of the first step."""
    assert (await post(client, critical())).status_code == 202
    await wait_for(lambda: len(tg.sent) == 1)
    await step(rt, clock, 0)
    due = (await lines(rt))[-1]
    assert due.startswith("escalation step 1 due at ")
    return due


async def press(tg: FakeTelegram, label: str) -> None:
    """Someone allowed presses a button of the group's first message, and the press is answered."""
    answered = len(tg.callback_answers)
    tg.press(tg.sent[0], callback_buttons(tg.sent[0])[label])
    await wait_for(lambda: len(tg.callback_answers) == answered + 1)


def counted(rt: Runtime, outcome: str) -> float:
    value = rt.registry.get_sample_value("notifier_escalations_total", {"outcome": outcome})
    return value or 0.0
