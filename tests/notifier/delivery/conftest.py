"""Configs that point every channel at the loopback fakes."""

from __future__ import annotations

from typing import Any

from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import SMTPServer
from tests.fakes.telegram import FakeTelegram
from tests.helpers import TOKEN


def all_channels(tg: FakeTelegram, slack: FakeSlack, smtp: SMTPServer | None, **delivery: Any) -> dict[str, Any]:
    receivers: list[dict[str, Any]] = [
        {
            "name": "tg",
            "telegram": [{"bot_token": tg.token, "chat_id": -1001234567890, "api_url": tg.url, "message_thread_id": 7}],
        },
        {"name": "slack-hook", "slack": [{"webhook_url": slack.webhook_url}]},
        {
            "name": "slack-bot",
            "slack": [{"bot_token": slack.token, "channel": "#trading-alerts", "api_url": slack.api_url}],
        },
    ]
    if smtp is not None:
        receivers.append(
            {
                "name": "mail",
                "email": [
                    {
                        "host": "127.0.0.1",
                        "port": smtp.port,
                        "tls": "none",
                        "from": "alerts@example.com",
                        "to": ["oncall@example.com", "trader@example.com"],
                    }
                ],
            }
        )
    names = [r["name"] for r in receivers]
    return {
        "server": {"auth": {"bearer_token": TOKEN}},
        "delivery": {"poll_interval": "50ms", "backoff_initial": "100ms", "backoff_max": "1s", **delivery},
        "receivers": receivers,
        "routes": {"receiver": names[0], "routes": [{"receivers": names}]},
    }
