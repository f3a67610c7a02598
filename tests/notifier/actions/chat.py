"""What the chat-action tests share: the notifier's settings with both chats and Alertmanager, and how to read and
press the buttons of a Telegram or Slack message."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram, Sent
from tests.helpers import TOKEN, binary, run

SIGNING = "8f742231b10e8888abcd99yyyzzz85a5"
AM_CONFIG = "route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n"


def config(tg: FakeTelegram, slack: FakeSlack, am_urls: list[str], **actions: Any) -> dict[str, Any]:
    return {
        "server": {"auth": {"bearer_token": TOKEN}},
        "delivery": {"poll_interval": "50ms", "backoff_initial": "100ms", "backoff_max": "1s"},
        "alertmanager": {"urls": am_urls, "external_url": "http://am.example"},
        "actions": {
            "allowed": {"telegram": [7001, 7002], "slack": ["U0ALICE"]},
            "telegram": {"poll_timeout": "1s", "lease": "10s"},
            "slack": {"signing_secret": SIGNING, "response_urls": [f"{slack.url}/respond/"]},
            **actions,
        },
        "receivers": [
            {"name": "tg", "telegram": [{"bot_token": tg.token, "chat_id": -1001234567890, "api_url": tg.url}]},
            {
                "name": "slack-bot",
                "slack": [{"bot_token": slack.token, "channel": "#trading-alerts", "api_url": slack.api_url}],
            },
        ],
        "routes": {"receiver": "tg", "routes": [{"receivers": ["tg", "slack-bot"], "repeat_interval": "1h"}]},
    }


def callback_buttons(message: Sent) -> dict[str, str]:
    """label -> callback data of a Telegram message's action buttons."""
    rows = (message.reply_markup or {}).get("inline_keyboard", [])
    return {b["text"]: b["callback_data"] for row in rows for b in row if "callback_data" in b}


def slack_buttons(blocks: list[dict[str, Any]]) -> dict[str, str]:
    return {
        e["text"]["text"]: e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"] if "value" in e
    }


def amtool_silences(am: str) -> list[dict[str, Any]]:
    out = run(binary("amtool"), "silence", "query", "--alertmanager.url", am, "-o", "json")
    assert out.returncode == 0, out.stderr
    result: list[dict[str, Any]] = json.loads(out.stdout or "[]")
    return result


def slack_press(slack: FakeSlack, value: str, user: str = "U0ALICE", name: str = "alice") -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": name},
        "channel": {"id": "C0TRADING"},
        "container": {"message_ts": slack.posted[0].ts},
        "response_url": slack.response_url(value[-6:]),
        "actions": [{"action_id": "notifier-0", "value": value, "type": "button"}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()
