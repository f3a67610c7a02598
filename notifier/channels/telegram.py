"""The Telegram channel (python-telegram-bot): HTML messages, URL buttons, replies in the group's thread.

Limits (core.telegram.org/bots/faq, "My bot is hitting limits"): about 1 message per second into one chat, 20 per
minute into one group or channel, about 30 per second per bot. They are enforced before sending by rate rules; the
API's own 429 (RetryAfter) is honoured to the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import logging
import re
from datetime import timedelta
from typing import Any, Literal

import msgspec
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    LinkPreviewOptions,
    ReplyParameters,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

from notifier.channels import Capabilities, ChannelPlugin, RateRule, Refusal, Shown, failure
from notifier.clock import Clock
from notifier.configtypes import Duration, Strict, secret
from notifier.domain import DeliveryReceipt, Message, Severity
from notifier.errors import ContentRejected, DeliveryError, PermanentError
from notifier.templates import Assembly, Renderer, Template
from notifier.templates.context import alert_view, silence_url

log = logging.getLogger("notifier.telegram")

PER_CHAT_PER_SECOND = 1  # "avoid sending more than one message per second" per chat
PER_GROUP_PER_MINUTE = 20  # "bots are not able to send more than 20 messages per minute to the same group"
PER_BOT_PER_SECOND = 30  # "the API will not allow bulk notifications to more than ~30 users per second"
MAX_BUTTONS = 4
# The limiter counts a message when it books the slot, Telegram when the message arrives; latency and the clocks of
# several replicas separate the two, so each window is kept a little longer than the provider's.
MARGIN_SECONDS = 1.0
# Words of Telegram's 400 answers that blame the message's text, not the chat or the bot: another text may pass.
CONTENT_ERRORS = ("too long", "parse", "entit", "text is empty", "text must be non-empty", "message text")


# Telegram Bot API: sendMessage text is 1-4096 characters after entity parsing (core.telegram.org/bots/api#sendmessage),
# counted in UTF-16 code units (`telegram_len`).
TELEGRAM_MAX_TEXT = 4096
TELEGRAM_MAX_CAPTION = 1024
TEMPLATE = Template("telegram", "html", "telegram.j2")
_TAG = re.compile(r"<[^>]+>")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def html_to_plain(text: str) -> str:
    """Telegram's fallback when it rejects our markup: the same words without tags."""
    return html.unescape(_TAG.sub("", text))


def telegram_len(html_text: str) -> int:
    """The length Telegram limits: UTF-16 code units of the text once its HTML is parsed."""
    return utf16_len(html_to_plain(html_text))


class TelegramTarget(Strict, kw_only=True):
    bot_token: str | None = None
    bot_token_file: str | None = None
    chat_id: int | str
    message_thread_id: int | None = None
    api_url: str = "https://api.telegram.org"
    silent_severities: list[Literal["critical", "warning", "info"]] = msgspec.field(default_factory=lambda: ["info"])
    buttons: bool = True
    timeout: Duration = Duration(15.0)  # for the Bot API's answer to one request

    def __post_init__(self) -> None:
        if isinstance(self.chat_id, str) and re.fullmatch(r"-?\d+", self.chat_id.strip()):
            self.chat_id = int(self.chat_id)  # a number that came through ${ENV} substitution
        if isinstance(self.chat_id, str) and not re.fullmatch(r"@[A-Za-z][A-Za-z0-9_]{3,}", self.chat_id):
            raise ValueError("chat_id: expected an integer or @channelname")
        self.bot_token = secret(self.bot_token, self.bot_token_file, "bot_token", required=True)
        self.api_url = self.api_url.rstrip("/")


def render(renderer: Renderer, message: Message, now: float, limit: int = TELEGRAM_MAX_TEXT) -> list[str]:
    """The message as Telegram HTML, in as few parts as it fits in."""
    header = renderer.macro(TEMPLATE, "header")
    alert = renderer.macro(TEMPLATE, "alert")
    footer = renderer.macro(TEMPLATE, "footer")

    def join(_g: dict[str, Any], head: str, texts: list[str], foot: str) -> str:
        return "\n".join(s for s in (head, "\n".join(texts), foot) if s)

    markup: Assembly[str] = Assembly(
        head=lambda g: str(header(g)).strip("\n"),
        alert=lambda a, detail: str(alert(a, detail)).strip("\n"),
        foot=lambda g: str(footer(g)).strip("\n"),
        join=join,
        size=telegram_len,
        fits=lambda text: telegram_len(text) <= limit,
        budget=limit,
    )
    return renderer.assemble(message, now, markup)


def _seconds(value: object) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)  # type: ignore[arg-type]


class TelegramChannel:
    """Sends one target's messages to one Telegram chat (optionally a forum topic)."""

    name = "telegram"

    def __init__(self, key: str, target: TelegramTarget, renderer: Renderer, clock: Clock) -> None:
        self._key = key
        self._target = target
        self._renderer = renderer
        self._clock = clock
        self.chat_id: int | str = target.chat_id
        token = str(target.bot_token)
        self._token_tag = hashlib.sha256(token.encode()).hexdigest()[:12]
        t = float(target.timeout)
        request = HTTPXRequest(
            connection_pool_size=8, connect_timeout=min(5.0, t), read_timeout=t, write_timeout=t, pool_timeout=5.0
        )
        self._bot = Bot(token, base_url=f"{target.api_url}/bot", request=request)

    def rate_rules(self) -> list[RateRule]:
        chat = str(self.chat_id)
        rules = [
            RateRule(f"tg:{self._token_tag}:chat:{chat}", PER_CHAT_PER_SECOND, 1.0 + MARGIN_SECONDS / 20),
            RateRule(f"tg:{self._token_tag}:bot", PER_BOT_PER_SECOND, 1.0),
        ]
        is_group = chat.startswith("-") or chat.startswith("@")  # groups, supergroups and channels
        if is_group:
            rules.append(RateRule(f"tg:{self._token_tag}:group:{chat}", PER_GROUP_PER_MINUTE, 60.0 + MARGIN_SECONDS))
        return rules

    def _buttons(self, message: Message) -> InlineKeyboardMarkup | None:
        if not self._target.buttons and not message.buttons:
            return None
        g = message.group
        if not self._target.buttons:
            return InlineKeyboardMarkup(
                [[InlineKeyboardButton(b.label, callback_data=b.action_id) for b in message.buttons]]
            )
        links: list[tuple[str, str]] = []
        if len(g.alerts) == 1:
            links = alert_view(g.alerts[0], g.external_url, self._clock.now()).links
        else:
            common = g.labels_for_routing()
            sil = silence_url(g.external_url, common)
            links = [
                (n, u)
                for n, u in (
                    ("Alertmanager", g.external_url.rstrip("/") + "/#/alerts" if g.external_url else ""),
                    ("Silence group", sil),
                )
                if u
            ]
        links = [(n, u) for n, u in links if u.startswith(("http://", "https://"))][:MAX_BUTTONS]
        rows = [[InlineKeyboardButton(n, url=u) for n, u in links]] if links else []
        if message.buttons:  # chat actions: the callback data is the stored action's id
            rows.append([InlineKeyboardButton(b.label, callback_data=b.action_id) for b in message.buttons])
        return InlineKeyboardMarkup(rows) if rows else None

    async def send(self, message: Message) -> DeliveryReceipt:
        now = self._clock.now()
        if message.minimal:
            text = self._renderer.minimal_text(message, now)
            msg_id = await self._send_part(text, message, 0, message.thread_ref, None, plain=True)
            return DeliveryReceipt(ref=str(msg_id), parts=1)
        # rendering a large group takes a while: not on the event loop, which answers webhooks meanwhile
        parts = await asyncio.to_thread(render, self._renderer, message, now)
        start = min(message.part, len(parts) - 1) if message.part else 0
        for i in range(start, len(parts)):
            if telegram_len(parts[i]) > TELEGRAM_MAX_TEXT:
                raise ContentRejected(f"part {i + 1} is longer than Telegram's {TELEGRAM_MAX_TEXT}", parts_done=i)
        markup = self._buttons(message)
        first_ref: str | None = None
        for i in range(start, len(parts)):
            reply_to = message.thread_ref if i == 0 else first_ref
            # the buttons go with the first part: the one an edit shows again
            msg_id = await self._send_part(parts[i], message, i, reply_to, markup if i == 0 else None)
            if first_ref is None:
                first_ref = str(msg_id)
        return DeliveryReceipt(ref=first_ref, parts=len(parts))

    async def _send_part(
        self,
        text: str,
        message: Message,
        index: int,
        reply_to: str | None,
        markup: InlineKeyboardMarkup | None,
        *,
        plain: bool = False,
    ) -> int:
        migrated = False
        while True:
            try:
                sent = await self._bot.send_message(
                    chat_id=self.chat_id,
                    text=text,
                    parse_mode=None if plain else ParseMode.HTML,
                    disable_notification=message.silent,
                    message_thread_id=self._target.message_thread_id,
                    reply_parameters=ReplyParameters(int(reply_to), allow_sending_without_reply=True)
                    if reply_to and reply_to.isdigit()
                    else None,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                    reply_markup=markup,
                )
                return int(sent.message_id)
            except ChatMigrated as exc:
                if migrated:
                    raise PermanentError("Telegram chat migrated twice in a row", parts_done=index) from None
                migrated = True
                log.error(
                    "TELEGRAM CHAT MIGRATED: target %s chat %s is now %s; sending there. Update chat_id in "
                    "the config to %s.",
                    self._key,
                    self.chat_id,
                    exc.new_chat_id,
                    exc.new_chat_id,
                )
                self.chat_id = exc.new_chat_id
            except BadRequest as exc:
                text_l = exc.message.lower()
                if "can't parse entities" in text_l and not plain:
                    log.warning(
                        "Telegram rejected the HTML of %s (%s); resending as plain text",
                        message.delivery_id,
                        exc.message,
                    )
                    plain = True
                    text = html_to_plain(text)
                elif "button" in text_l and markup is not None:
                    log.warning(
                        "Telegram rejected the buttons of %s (%s); resending without them",
                        message.delivery_id,
                        exc.message,
                    )
                    markup = None
                else:
                    raise _failure(exc, index) from None
            except TelegramError as exc:
                raise _failure(exc, index) from None

    async def edit(self, message: Message) -> DeliveryReceipt:
        if not message.edit_ref or not message.edit_ref.isdigit():
            raise PermanentError("nothing to edit: the message has no Telegram message id")
        parts = await asyncio.to_thread(render, self._renderer, message, self._clock.now())
        try:
            await self._bot.edit_message_text(
                chat_id=self.chat_id,
                message_id=int(message.edit_ref),
                text=parts[0],
                parse_mode=ParseMode.HTML,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
                reply_markup=self._buttons(message),
            )
        except BadRequest as exc:
            if "not modified" not in exc.message.lower():  # the message shows this already
                raise failure(Refusal.PERMANENT, f"Telegram refused the edit: {exc.message}") from None
        except TelegramError as exc:
            raise _failure(exc, None) from None
        return DeliveryReceipt(ref=None, parts=0)

    async def send_image(self, message: Message, png: bytes, caption: str) -> DeliveryReceipt:
        reply_to = message.edit_ref
        try:
            sent = await self._bot.send_photo(
                chat_id=self.chat_id,
                photo=InputFile(png, filename="chart.png"),
                caption=caption[:TELEGRAM_MAX_CAPTION],
                disable_notification=True,
                message_thread_id=self._target.message_thread_id,
                reply_parameters=ReplyParameters(int(reply_to), allow_sending_without_reply=True)
                if reply_to and reply_to.isdigit()
                else None,
            )
        except TelegramError as exc:
            raise _failure(exc, None) from None
        return DeliveryReceipt(ref=str(sent.message_id), parts=1)

    async def aclose(self) -> None:
        with contextlib.suppress(TelegramError):
            await self._bot.shutdown()


def _failure(exc: TelegramError, parts_done: int | None) -> DeliveryError:
    """What python-telegram-bot's error means: the one place Telegram's failures are classified."""
    if isinstance(exc, RetryAfter):
        wait = _seconds(exc.retry_after)
        return failure(
            Refusal.RATE_LIMITED, f"Telegram rate limit: retry after {wait:g}s", retry_after=wait, parts_done=parts_done
        )
    if isinstance(exc, BadRequest):
        content = any(word in exc.message.lower() for word in CONTENT_ERRORS)
        refusal, what = (Refusal.CONTENT, "the text") if content else (Refusal.PERMANENT, "the message")
        return failure(refusal, f"Telegram refused {what}: {exc.message}", parts_done=parts_done)
    if isinstance(exc, Forbidden | InvalidToken | EndPointNotFound):
        return failure(Refusal.PERMANENT, f"Telegram refused the bot: {exc.message}", parts_done=parts_done)
    if isinstance(exc, TimedOut | NetworkError):
        return failure(Refusal.UNAVAILABLE, f"Telegram unreachable: {exc.message}", parts_done=parts_done)
    return failure(Refusal.UNAVAILABLE, f"Telegram error: {exc.message}", parts_done=parts_done)


def _silent(target: TelegramTarget, severity: Severity) -> bool:
    return severity.value in target.silent_severities


def _acts(_target: TelegramTarget) -> bool:
    return True


def _show(renderer: Renderer, message: Message, now: float) -> list[Shown]:
    """Each part as Telegram's HTML, and as a page that looks like it: Telegram keeps the text's line breaks."""
    return [
        Shown(text=part, html=f"<div style='font:15px/1.4 sans-serif;white-space:pre-wrap'>{part}</div>", raw=part)
        for part in render(renderer, message, now)
    ]


PLUGIN: ChannelPlugin[TelegramTarget] = ChannelPlugin(
    name="telegram",
    target=TelegramTarget,
    templates=(TEMPLATE,),
    build=TelegramChannel,
    show=_show,
    capabilities=Capabilities(edit=True, threads=True, splits=True, images=True),
    silent=_silent,
    buttons=_acts,
)
