"""Slack's interaction and command requests: verified with the app's signing secret (slack-sdk's SignatureVerifier:
the HMAC of the body and a timestamp at most five minutes old), handled once (a request whose body was seen
before -- resent within the five minutes, or retried by Slack -- changes nothing), answered at once, the work done
afterwards and its outcome posted to the request's response_url, if that is one of Slack's (Slack waits three
seconds for the answer)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook.async_client import AsyncWebhookClient

from notifier.actions.commands import Actor, Answer
from notifier.actions.service import ActionService
from notifier.clock import Clock
from notifier.domain import ActionOutcome
from notifier.errors import StoreUnavailable
from notifier.store import Store
from notifier.store import actions as sa
from notifier.templates.safety import escape_mrkdwn

log = logging.getLogger("notifier.slack.actions")
COMMAND_BUDGET = 2.5  # seconds a command's answer may take before Slack's three are up


REQUEST_MEMORY = 600.0  # seconds a request's body is remembered: longer than a signature is accepted (300)


class SlackRequests:
    def __init__(
        self, signing_secret: str, service: ActionService, store: Store, clock: Clock, response_urls: list[str]
    ) -> None:
        self._verifier = SignatureVerifier(signing_secret)
        self._service = service
        self._store = store
        self._clock = clock
        self._response_urls = [urlsplit(u) for u in response_urls]
        self._tasks: set[asyncio.Task[None]] = set()

    def genuine(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return self._verifier.is_valid_request(body, dict(headers))

    async def first_sight(self, body: bytes) -> bool:
        """Whether this request is new. Its body identifies it: a press or a command carries its own trigger id,
        and Slack's retries and a resent request carry the same body."""
        key = "slack:" + hashlib.sha256(body).hexdigest()
        now = self._clock.now()
        try:
            fresh: bool = await self._store.run_in_transaction(
                lambda conn: sa.first_sight(conn, key, now, REQUEST_MEMORY)
            )
        except StoreUnavailable as exc:
            # Whether it came before cannot be told now: it is handled (a press or command done twice changes
            # nothing twice), and the service tries the store again, then says it is away if it stays away.
            log.warning("Slack request: the store is unavailable (%s)", exc)
            return True
        return fresh

    def slacks(self, url: str) -> bool:
        """Whether `url` is one of Slack's (a prefix of `actions.slack.response_urls`): nowhere else is posted."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return False
        for allowed in self._response_urls:
            if (
                parts.scheme == allowed.scheme
                and (parts.hostname or "") == allowed.hostname
                and port == allowed.port
                and not parts.username
                and parts.path.startswith(allowed.path)
            ):
                return True
        return False

    def interaction(self, body: bytes) -> str | None:
        """A verified interaction (a button press): the press is done in the background and its outcome posted to
        the response_url. Returns what is wrong with the request, or None."""
        fields = parse_qs(body.decode("utf-8", "replace"))
        try:
            payload = json.loads(fields["payload"][0])
            user = payload["user"]
            action = payload["actions"][0]
            response_url = str(payload.get("response_url", ""))
        except (KeyError, IndexError, ValueError, TypeError):
            return "expected a block_actions payload with a user and an action"
        actor = Actor("slack", str(user.get("id", "")), str(user.get("username") or user.get("name") or ""))
        self._background(self._press(actor, str(action.get("value", "")), response_url))
        return None

    async def _press(self, actor: Actor, action_id: str, response_url: str) -> None:
        answer = await self._service.press(actor, action_id)
        await self.respond(response_url, answer)

    async def command(self, body: bytes) -> dict[str, Any]:
        """A verified slash command: its answer, or a note that it follows at the response_url."""
        fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        actor = Actor("slack", fields.get("user_id", ""), fields.get("user_name", ""))
        text = fields.get("text", "").strip() or "help"
        asked = self._service.command(actor, "/" + text.lstrip("/"))
        task = asyncio.ensure_future(asked)
        done, _ = await asyncio.wait({task}, timeout=COMMAND_BUDGET)
        if not done:
            url = fields.get("response_url", "")

            async def later() -> None:
                answer = await task
                if answer is not None:
                    await self.respond(url, answer)

            self._background(later())
            return {"response_type": "ephemeral", "text": "Working on it…"}
        answer = task.result()
        if answer is None:
            return {"response_type": "ephemeral", "text": "Commands: alerts, silences, status, help"}
        return slack_answer(answer)

    async def respond(self, response_url: str, answer: Answer) -> None:
        """Post the answer to the request's response_url, if it is Slack's."""
        if not self.slacks(response_url):
            log.warning(
                "a Slack request's response_url is not one of Slack's (actions.slack.response_urls); not answered"
            )
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
