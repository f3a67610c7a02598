"""The Slack channel (slack-sdk): an incoming webhook, or a bot token with chat.postMessage.

With a bot token, a group's later messages go in the thread of its first message, and the first message is edited
(chat.update) to show the group's current state, so the channel shows one line per incident. Incoming webhooks
return no message reference, so they can neither thread nor edit: each message stands alone.

Limits (api.slack.com/apis/rate-limits, api.slack.com/messaging/webhooks): about one message per second per channel;
over it, HTTP 429 with Retry-After, which is honoured exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from notifier.channels import Capabilities, ChannelPlugin, RateRule, Refusal, Shown, failure, refusal_of_status
from notifier.clock import Clock
from notifier.configtypes import Duration, Strict, secret
from notifier.domain import DeliveryReceipt, Message, Severity
from notifier.errors import ContentRejected, DeliveryError, PermanentError, RetryableError
from notifier.templates import Assembly, Renderer, Template
from notifier.templates.safety import clip, escape_mrkdwn

log = logging.getLogger("notifier.slack")

PER_CHANNEL_PER_SECOND = 1  # chat.postMessage and incoming webhooks: ~1 message/s per channel
# Slack's error codes that no retry can fix (api.slack.com/methods/chat.postMessage#errors)
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "restricted_action",
        "invalid_arguments",
        "channel_is_archived",
        "no_service",
        "invalid_token",
        "action_prohibited",
        "posting_to_general_channel_denied",
        "user_not_found",
        "team_disabled",
    }
)

# Error codes that blame the message's content: another text may pass (the minimal safe form is tried).
CONTENT_ERRORS = frozenset(
    {
        "invalid_blocks",
        "invalid_attachments",
        "msg_too_long",
        "msg_blocks_too_long",
        "too_many_attachments",
        "invalid_payload",
        "no_text",
    }
)


# Slack Block Kit (api.slack.com/reference/block-kit/blocks): 50 blocks a message, section text 3,000 characters,
# header 150; messages past ~13k characters of blocks fail with msg_blocks_too_long, so we stay under 12k (counting
# each block's text and a fixed allowance for its structure).
SLACK_MAX_BLOCKS = 50
SLACK_MAX_SECTION = 3000
SLACK_MAX_HEADER = 150
SLACK_MAX_TOTAL = 12000
SLACK_BLOCK_ALLOWANCE = 100
# chat.postMessage's top-level text: Slack truncates past 40,000 characters; a fallback needs far fewer.
SLACK_MAX_TEXT = 3000
SLACK_MAX_ALT = 1000  # files.getUploadURLExternal's alt_txt
TEMPLATE = Template("slack", "mrkdwn", "slack.j2")


@dataclass(frozen=True, slots=True)
class SlackPart:
    """One Slack message: fallback text (notifications, screen readers) and the coloured attachment's blocks. The
    text is mrkdwn like the blocks, escaped the same way."""

    text: str
    color: str
    blocks: list[dict[str, Any]]

    def payload(self) -> dict[str, Any]:
        if not self.blocks:
            return {"text": self.text}
        return {"text": self.text, "attachments": [{"color": self.color, "blocks": self.blocks}]}

    def size(self) -> int:
        """What counts against SLACK_MAX_TOTAL: every block's text plus an allowance for its structure."""
        total = 0
        for b in self.blocks:
            total += SLACK_BLOCK_ALLOWANCE
            if "text" in b:
                total += len(b["text"]["text"])
            total += sum(len(e.get("text", "")) for e in b.get("elements", ()))
        return total

    def fits(self) -> bool:
        sections_ok = all(len(b["text"]["text"]) <= SLACK_MAX_SECTION for b in self.blocks if b["type"] == "section")
        return (
            len(self.blocks) <= SLACK_MAX_BLOCKS
            and sections_ok
            and self.size() <= SLACK_MAX_TOTAL
            and 0 < len(self.text) <= SLACK_MAX_TEXT
        )


class SlackTarget(Strict, kw_only=True):
    webhook_url: str | None = None
    webhook_url_file: str | None = None
    bot_token: str | None = None
    bot_token_file: str | None = None
    channel: str | None = None
    api_url: str = "https://slack.com/api/"
    mention: str | None = None  # e.g. "<!channel>" or "<@U123>" for critical alerts outside quiet hours
    timeout: Duration = Duration(15.0)  # for Slack's answer to one request

    def __post_init__(self) -> None:
        self.webhook_url = secret(self.webhook_url, self.webhook_url_file, "webhook_url", required=False)
        self.bot_token = secret(self.bot_token, self.bot_token_file, "bot_token", required=False)
        if bool(self.webhook_url) == bool(self.bot_token):
            raise ValueError("give either webhook_url(_file) or bot_token(_file) with channel")
        if self.bot_token and not self.channel:
            raise ValueError("channel: required with bot_token")
        if not self.api_url.endswith("/"):
            self.api_url += "/"


def render(renderer: Renderer, message: Message, now: float) -> list[SlackPart]:
    """The message as Slack Block Kit posts, in as few as it fits in."""
    header = renderer.macro(TEMPLATE, "header")
    summary = renderer.macro(TEMPLATE, "summary")
    alert = renderer.macro(TEMPLATE, "alert")
    footer = renderer.macro(TEMPLATE, "footer")

    def join(g: dict[str, Any], title: str, texts: list[str], foot: str) -> SlackPart:
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": clip(title, SLACK_MAX_HEADER), "emoji": True}}
        ]
        s = str(summary(g)).strip()
        if s:
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(s, 3000)}]})
        if g["detail"]:
            blocks += [_section(t) for t in texts]
        else:
            buf = ""
            for t in texts:
                if buf and len(buf) + 1 + len(t) > SLACK_MAX_SECTION:
                    blocks.append(_section(buf))
                    buf = t
                else:
                    buf = f"{buf}\n{t}" if buf else t
            if buf:
                blocks.append(_section(buf))
        if foot:
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(foot, 3000)}]})
        # the top-level text is mrkdwn, which Slack parses for mentions and links: escaped like the blocks
        return SlackPart(text=escape_mrkdwn(clip(title, SLACK_MAX_TEXT)), color=g["color"], blocks=blocks)

    markup: Assembly[SlackPart] = Assembly(
        # header blocks are plain_text: no mrkdwn escapes there; the title is cleaned text already
        head=lambda g: html.unescape(str(header(g)).strip()),
        alert=lambda a, detail: str(alert(a, detail)).strip(),
        foot=lambda g: str(footer(g)).strip(),
        join=join,
        size=lambda text: len(text),
        fits=SlackPart.fits,
        # the summary's context block and the blocks' structure, beyond the header and footer measured
        budget=SLACK_MAX_TOTAL - SLACK_MAX_SECTION // 5 - 8 * SLACK_BLOCK_ALLOWANCE,
    )
    return renderer.assemble(message, now, markup)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SLACK_MAX_SECTION)}}


def _retry_after(headers: Any) -> float | None:
    try:
        value = headers.get("Retry-After") or headers.get("retry-after")
    except AttributeError:
        return None
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class SlackChannel:
    """Sends one target's messages to one Slack channel."""

    name = "slack"

    def __init__(self, key: str, target: SlackTarget, renderer: Renderer, clock: Clock) -> None:
        self._key = key
        self._target = target
        self._renderer = renderer
        self._clock = clock
        secret = str(target.webhook_url or target.bot_token)
        self._tag = hashlib.sha256(f"{secret}\x00{target.channel}".encode()).hexdigest()[:12]
        self._web = (
            AsyncWebClient(token=str(target.bot_token), base_url=target.api_url, timeout=int(max(1, target.timeout)))
            if target.bot_token
            else None
        )
        self._hook = (
            AsyncWebhookClient(str(target.webhook_url), timeout=int(max(1, target.timeout)))
            if target.webhook_url
            else None
        )

    def rate_rules(self) -> list[RateRule]:
        return [RateRule(f"slack:{self._tag}", PER_CHANNEL_PER_SECOND, 1.05)]  # a little slack for latency

    def _with_mention(self, parts: list[SlackPart], message: Message) -> list[SlackPart]:
        mention = self._target.mention
        loud = not message.silent and message.group.severity is Severity.CRITICAL and message.group.firing
        if not mention or not loud:
            return parts
        first = parts[0]
        section = {"type": "section", "text": {"type": "mrkdwn", "text": mention}}
        blocks = [section, *first.blocks] if first.blocks else []
        return [SlackPart(f"{mention} {first.text}", first.color, blocks), *parts[1:]]

    async def _render(self, message: Message) -> list[SlackPart]:
        now = self._clock.now()
        if message.minimal:
            return [SlackPart(escape_mrkdwn(self._renderer.minimal_text(message, now)), "", [])]
        # rendering a large group takes a while: not on the event loop, which answers webhooks meanwhile
        parts = await asyncio.to_thread(render, self._renderer, message, now)
        for i, p in enumerate(parts):
            if i >= message.part and not p.fits():
                raise ContentRejected(f"part {i + 1} is beyond Slack's Block Kit limits", parts_done=i)
        return parts

    @staticmethod
    def _with_buttons(parts: list[SlackPart], message: Message) -> list[SlackPart]:
        """Chat actions as a Block Kit actions block at the end of the first part (a bot token's messages only)."""
        if not message.buttons or not parts[0].blocks:
            return parts
        elements = [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": b.label},
                "action_id": f"notifier-{i}",
                "value": b.action_id,
                **({"style": "danger"} if b.label.startswith("Silence") else {}),
            }
            for i, b in enumerate(message.buttons)
        ]
        first = parts[0]
        return [
            SlackPart(first.text, first.color, [*first.blocks, {"type": "actions", "elements": elements}]),
            *parts[1:],
        ]

    async def send(self, message: Message) -> DeliveryReceipt:
        parts = self._with_mention(await self._render(message), message)
        if self._web is not None:
            parts = self._with_buttons(parts, message)
        start = min(message.part, len(parts) - 1) if message.part else 0
        if self._hook is not None:
            for i in range(start, len(parts)):
                await self._post_webhook(parts[i], i)
            return DeliveryReceipt(ref=None, parts=len(parts))
        first_ref: str | None = None
        thread_ts = message.thread_ref.split("/", 1)[1] if message.thread_ref else None
        for i in range(start, len(parts)):
            channel, ts = await self._post_api(parts[i], i, thread_ts)
            if first_ref is None:
                first_ref = f"{channel}/{ts}"
            if thread_ts is None:
                thread_ts = ts  # later parts of a new incident go in its thread
        if message.thread_ref:
            await self._update_first(message.thread_ref, parts[0])
        return DeliveryReceipt(ref=first_ref if not message.thread_ref else message.thread_ref, parts=len(parts))

    async def _post_webhook(self, part: SlackPart, index: int) -> None:
        assert self._hook is not None
        try:
            resp = await self._hook.send(**part.payload())
        except (TimeoutError, aiohttp.ClientError, OSError, SlackClientError) as exc:
            said = f"Slack webhook unreachable: {type(exc).__name__}"
            raise failure(Refusal.UNAVAILABLE, said, parts_done=index) from None
        if resp.status_code == 200:
            return
        body = (resp.body or "").strip()[:200]
        refusal = refusal_of_status(resp.status_code)
        if refusal is Refusal.PERMANENT and body in CONTENT_ERRORS:
            refusal = Refusal.CONTENT
        said = {
            Refusal.RATE_LIMITED: "Slack rate limit (429)",
            Refusal.UNAVAILABLE: f"Slack webhook answered {resp.status_code}",
            Refusal.CONTENT: f"Slack refused the message: {resp.status_code} {body}",
        }.get(refusal, f"Slack webhook refused the message: {resp.status_code} {body}")
        raise failure(refusal, said, retry_after=_retry_after(resp.headers), parts_done=index)

    def _api_error(self, exc: SlackApiError, index: int) -> DeliveryError:
        """What the Web API's error means: Slack answers 200 with an error code for most refusals."""
        resp = exc.response
        status = getattr(resp, "status_code", 0)
        code = ""
        try:
            code = str(resp.get("error", "")) if resp is not None else ""
        except Exception:
            code = ""
        if status == 429 or code == "ratelimited":
            wait = _retry_after(resp.headers)
            return failure(Refusal.RATE_LIMITED, "Slack rate limit (429)", retry_after=wait, parts_done=index)
        if code in CONTENT_ERRORS:
            return failure(Refusal.CONTENT, f"Slack refused the message: {code}", parts_done=index)
        if code in PERMANENT_ERRORS:
            return failure(Refusal.PERMANENT, f"Slack refused the message: {code}", parts_done=index)
        return failure(Refusal.UNAVAILABLE, f"Slack API error: {code or status}", parts_done=index)

    async def _post_api(self, part: SlackPart, index: int, thread_ts: str | None) -> tuple[str, str]:
        assert self._web is not None
        try:
            resp = await self._web.chat_postMessage(
                channel=str(self._target.channel),
                thread_ts=thread_ts,
                unfurl_links=False,
                unfurl_media=False,
                **part.payload(),
            )
        except SlackApiError as exc:
            raise self._api_error(exc, index) from None
        except (TimeoutError, aiohttp.ClientError, OSError, SlackClientError) as exc:
            raise RetryableError(f"Slack unreachable: {type(exc).__name__}", parts_done=index) from None
        return str(resp["channel"]), str(resp["ts"])

    async def _update_first(self, ref: str, part: SlackPart) -> None:
        """Best effort: the thread reply is what matters; a failed edit is logged, not retried."""
        assert self._web is not None
        channel, _, ts = ref.partition("/")
        try:
            await self._web.chat_update(channel=channel, ts=ts, **part.payload())
        except (TimeoutError, SlackApiError, aiohttp.ClientError, OSError, SlackClientError) as exc:
            log.warning("could not update the first Slack message of %s: %s", self._key, type(exc).__name__)

    async def edit(self, message: Message) -> DeliveryReceipt:
        if self._web is None or not message.edit_ref or "/" not in message.edit_ref:
            raise PermanentError("nothing to edit: an incoming webhook's messages cannot be edited")
        parts = self._with_buttons(await self._render(message), message)
        channel, _, ts = message.edit_ref.partition("/")
        try:
            await self._web.chat_update(channel=channel, ts=ts, **parts[0].payload())
        except SlackApiError as exc:
            raise self._api_error(exc, 0) from None
        except (TimeoutError, aiohttp.ClientError, OSError, SlackClientError) as exc:
            raise RetryableError(f"Slack unreachable: {type(exc).__name__}") from None
        return DeliveryReceipt(ref=None, parts=0)

    async def send_image(self, message: Message, png: bytes, caption: str) -> DeliveryReceipt:
        """The picture in the thread of the group's first message (files upload v2: an upload URL, the bytes, then
        the upload completed into the channel and thread). Only a bot token's messages have a thread."""
        if self._web is None or not message.edit_ref or "/" not in message.edit_ref:
            raise PermanentError("no thread to put a picture in: an incoming webhook's messages have none")
        channel, _, ts = message.edit_ref.partition("/")
        try:
            sent = await self._web.files_upload_v2(
                channel=channel,
                thread_ts=ts,
                file=png,
                filename="chart.png",
                title=caption[:SLACK_MAX_HEADER],
                alt_txt=caption[:SLACK_MAX_ALT],
            )
        except SlackApiError as exc:
            raise self._api_error(exc, 0) from None
        except (TimeoutError, aiohttp.ClientError, OSError, SlackClientError) as exc:
            # SlackRequestError (a subclass) is also how the SDK reports the upload step's own refusal
            raise RetryableError(f"Slack upload failed: {type(exc).__name__}") from None
        file = sent.get("file") or {}
        return DeliveryReceipt(ref=str(file.get("id") or "") or None, parts=1)

    async def aclose(self) -> None:
        return None


def _acts(target: SlackTarget) -> bool:
    return target.bot_token is not None  # an incoming webhook hears no presses and cannot edit


def _shown_lines(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """A Slack post as (block type, text) pairs, in order: what a page draws as Slack shows it."""
    out: list[tuple[str, str]] = []
    for att in payload.get("attachments", []) or [{"blocks": payload.get("blocks", [])}]:
        for b in att.get("blocks", []):
            if "text" in b:
                out.append((b["type"], str(b["text"]["text"])))
            for e in b.get("elements", []):
                text = e.get("text")
                out.append((b["type"], str(text["text"] if isinstance(text, dict) else text or "")))
    return out or [("section", str(payload.get("text", "")))]


def _show(renderer: Renderer, message: Message, now: float) -> list[Shown]:
    shown = []
    for part in render(renderer, message, now):
        payload = part.payload()
        lines = _shown_lines(payload)
        shown.append(Shown(text="\n".join(text for _kind, text in lines), blocks=lines, raw=payload))
    return shown


PLUGIN: ChannelPlugin[SlackTarget] = ChannelPlugin(
    name="slack",
    target=SlackTarget,
    templates=(TEMPLATE,),
    build=SlackChannel,
    show=_show,
    capabilities=Capabilities(edit=True, threads=True, splits=True, images=True),
    buttons=_acts,
)
