"""Slack's interaction and command requests: verified with the app's signing secret (slack-sdk's SignatureVerifier:
the HMAC of the body and a timestamp at most five minutes old), answered at once, the work done afterwards and its
outcome posted to the request's response_url (Slack waits three seconds for the answer)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook.async_client import AsyncWebhookClient

from notifier.actions.service import ActionService, Actor, Answer
from notifier.domain import ActionOutcome
from notifier.templates.safety import escape_mrkdwn

log = logging.getLogger("notifier.slack.actions")
COMMAND_BUDGET = 2.5  # seconds a command's answer may take before Slack's three are up


class SlackRequests:
    def __init__(self, signing_secret: str, service: ActionService) -> None:
        self._verifier = SignatureVerifier(signing_secret)
        self._service = service
        self._tasks: set[asyncio.Task[None]] = set()

    def genuine(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return self._verifier.is_valid_request(body, dict(headers))

    def interaction(self, body: bytes) -> str | None:
        """A verified interaction (a button press): the press is done in the background and its outcome posted to
        the response_url. Returns what is wrong with the request, or None."""
        fields = parse_qs(body.decode("utf-8", "replace"))
        try:
            payload = json.loads(fields["payload"][0])
            user = payload["user"]
            action = payload["actions"][0]
            response_url = str(payload.get("response_url", ""))
            channel = (payload.get("channel") or {}).get("id")
        except (KeyError, IndexError, ValueError, TypeError):
            return "expected a block_actions payload with a user and an action"
        actor = Actor("slack", str(user.get("id", "")), str(user.get("username") or user.get("name") or ""))
        self._background(self._press(actor, str(action.get("value", "")), channel, response_url))
        return None

    async def _press(self, actor: Actor, action_id: str, channel: str | None, response_url: str) -> None:
        answer = await self._service.press(actor, action_id, channel)
        await respond(response_url, answer)

    async def command(self, body: bytes) -> dict[str, Any]:
        """A verified slash command: its answer, or a note that it follows at the response_url."""
        fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        actor = Actor("slack", fields.get("user_id", ""), fields.get("user_name", ""))
        text = fields.get("text", "").strip() or "help"
        asked = self._service.command(actor, "/" + text.lstrip("/"), fields.get("channel_id"))
        task = asyncio.ensure_future(asked)
        done, _ = await asyncio.wait({task}, timeout=COMMAND_BUDGET)
        if not done:
            url = fields.get("response_url", "")

            async def later() -> None:
                answer = await task
                if answer is not None:
                    await respond(url, answer)

            self._background(later())
            return {"response_type": "ephemeral", "text": "Working on it…"}
        answer = task.result()
        if answer is None:
            return {"response_type": "ephemeral", "text": "Commands: alerts, silences, status, help"}
        return slack_answer(answer)

    def _background(self, coro: Any) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
            with contextlib.suppress(BaseException):
                await t


def slack_answer(answer: Answer) -> dict[str, Any]:
    """An answer as an ephemeral Slack message: its text, and per listed line a section with its buttons."""
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": escape_mrkdwn(answer.text)}}]
    for line, buttons in answer.rows:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": escape_mrkdwn(line)}})
        if buttons:
            blocks.append(
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": b.label},
                            "action_id": f"notifier-{i}",
                            "value": b.action_id,
                        }
                        for i, b in enumerate(buttons)
                    ],
                }
            )
    return {"response_type": "ephemeral", "text": escape_mrkdwn(answer.text), "blocks": blocks}


async def respond(response_url: str, answer: Answer) -> None:
    if not response_url.startswith("https://") and not response_url.startswith("http://"):
        return
    message = slack_answer(answer)
    message["replace_original"] = False
    try:
        resp = await AsyncWebhookClient(response_url, timeout=10).send_dict(message)
        if resp.status_code != 200:
            log.warning("Slack refused the answer to an action: %s", resp.status_code)
    except Exception as exc:  # the action itself is done; only telling the person failed
        log.warning("could not answer a Slack action: %s", type(exc).__name__)
    if answer.outcome is ActionOutcome.FAILED:
        log.warning("Slack action failed: %s", answer.text)
