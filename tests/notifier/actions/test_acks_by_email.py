"""An acknowledgement where no message can be edited: an email is never edited, so the group's next email tells who
acknowledged it, and the email digest lists the acknowledgements of its period."""

from __future__ import annotations

import json
import time

from notifier.clock import FrozenClock
from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import SMTPServer, mail_text
from tests.fakes.telegram import FakeTelegram
from tests.helpers import make_group, settings_from, wait_for
from tests.notifier.actions.chat import callback_buttons, config
from tests.notifier.harness import post, running


async def test_email_cannot_be_edited_so_the_groups_next_email_tells_the_acknowledgement(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack, smtp: SMTPServer, am_url: str
) -> None:
    tg, slack = fake_telegram, fake_slack
    cfg = config(tg, slack, [am_url])
    cfg["receivers"].append(
        {
            "name": "mail",
            "email": [
                {
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "tls": "none",
                    "from": "a@example.com",
                    "to": ["b@example.com"],
                }
            ],
        }
    )
    cfg["routes"]["routes"][0]["receivers"] = ["tg", "mail"]
    async with running(settings_from(cfg, sqlite_url)) as (client, _rt):
        assert (await post(client, json.dumps(make_group(2, name="DiskFull")))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1 and len(smtp.messages) == 1)
        assert "acknowledged" not in smtp.messages[0].message.as_string()
        tg.press(tg.sent[0], callback_buttons(tg.sent[0])["Ack"])
        await wait_for(lambda: len(tg.callback_answers) == 1 and len(tg.edits) == 1, timeout=15)
        # one of the two alerts resolves: the group's next email says who acknowledged it
        partly = make_group(2, name="DiskFull", resolved={1})
        assert (await post(client, json.dumps(partly))).status_code == 202
        await wait_for(lambda: len(smtp.messages) == 2)
        text = mail_text(smtp.messages[1].message, "plain")
        assert "✅ acknowledged by @alice at " in text


async def test_the_digest_lists_the_acknowledgements_of_its_period(
    sqlite_url: str, fake_telegram: FakeTelegram, fake_slack: FakeSlack, smtp: SMTPServer, am_url: str
) -> None:
    tg, slack = fake_telegram, fake_slack
    cfg = config(tg, slack, [am_url])
    email = {"host": "127.0.0.1", "port": smtp.port, "tls": "none", "from": "a@example.com", "to": ["b@example.com"]}
    cfg["receivers"].append({"name": "mail", "email": [email], "digest": {"schedule": "every 1h", "send_empty": True}})
    cfg["routes"]["routes"][0]["receivers"] = ["tg", "mail"]
    clock = FrozenClock(float(int(time.time()) // 3600 * 3600 + 60))
    async with running(settings_from(cfg, sqlite_url), clock=clock) as (client, rt):
        assert (await post(client, json.dumps(make_group(1, name="BotDown")))).status_code == 202
        await wait_for(lambda: len(tg.sent) == 1)
        tg.press(tg.sent[0], callback_buttons(tg.sent[0])["Ack"])
        await wait_for(lambda: len(tg.callback_answers) == 1, timeout=15)
        await clock.advance(3600)
        assert await rt.digests.run_due() == 1

        def digest_with_acks() -> str:
            for m in smtp.messages:
                part = m.message.get_body(("plain",))
                text = part.get_content() if part is not None else ""
                if "Acknowledged from the chat" in text:
                    return str(text)
            return ""

        await wait_for(lambda: bool(digest_with_acks()))
        text = digest_with_acks().replace("\r\n", "\n")
        at = time.strftime("%Y-%m-%d %H:%M", time.gmtime(clock.now() - 3600))
        assert f"Acknowledged from the chat:\n  - BotDown by @alice at {at}" in text
