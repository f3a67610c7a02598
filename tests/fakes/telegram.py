"""A fake Telegram Bot API server: real HTTP on loopback, strict like the real one.

It checks the token and the method, the chat, the text's length after entity parsing (4096), and the HTML: only the
tags Telegram knows, balanced, and only its entities; anything else is 400 "can't parse entities". Tests can script
failures (429 with retry_after, 5xx, a migrated chat) and enforce the per-group flood limit. Every accepted message
is kept, with the time it arrived.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from typing import Any

from aiohttp import web

ALLOWED_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "tg-spoiler",
    "span",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
}
_TAG_START = re.compile(r"</?[a-zA-Z][a-zA-Z0-9-]*(\s[^<>]*)?/?>")
_ENTITY = re.compile(r"&(?!(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);)")


class EntityError(ValueError):
    pass


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            raise EntityError(f'Unsupported start tag "{tag}"')
        if tag == "a" and not dict(attrs).get("href"):
            raise EntityError('Can\'t find "href" attribute of "a" tag')
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            raise EntityError(f'Can\'t find end tag corresponding to start tag "{tag}"')
        self.stack.pop()

    def handle_entityref(self, name: str) -> None:
        if name not in ("lt", "gt", "amp", "quot"):
            raise EntityError(f'Unsupported HTML entity "&{name};"')


def check_html(text: str) -> str:
    """Validate Telegram HTML; returns the visible text."""
    pos = 0
    for m in re.finditer(r"<", text):
        if m.start() < pos:
            continue
        tm = _TAG_START.match(text, m.start())
        if not tm:
            raise EntityError(f"Unexpected '<' at byte offset {len(text[: m.start()].encode())}")
        pos = tm.end()
    if _ENTITY.search(_TAG_START.sub("", text)):
        raise EntityError("Character '&' is reserved and must be escaped")
    c = _Checker()
    c.feed(text)
    c.close()
    if c.stack:
        raise EntityError(f'Can\'t find end tag corresponding to start tag "{c.stack[-1]}"')
    return unescape(re.sub(r"<[^>]+>", "", text))


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class Sent:
    """One message the fake accepted."""

    message_id: int
    chat_id: int | str
    text: str
    parse_mode: str | None
    disable_notification: bool
    message_thread_id: int | None
    reply_to_message_id: int | None
    reply_markup: dict[str, Any] | None
    at: float
    method: str = "sendMessage"


@dataclass
class Photo:
    """A picture the fake took (sendPhoto), with the size its PNG header gives."""

    message_id: int
    chat_id: int | str
    caption: str
    png: bytes
    width: int
    height: int
    reply_to_message_id: int | None
    disable_notification: bool
    at: float


@dataclass
class Failure:
    status: int
    description: str
    retry_after: int | None = None
    migrate_to: int | None = None


@dataclass
class FakeTelegram:
    """The fake server. `url` is the base for `api_url` (python-telegram-bot adds /bot<token>/<method>)."""

    token: str = "123456:TEST-token"
    extra_tokens: set[str] = field(default_factory=set)  # more bots served by the same fake
    chats: set[int | str] = field(default_factory=lambda: {-1001234567890, 42, "@alerts_channel"})
    group_limit_per_minute: int | None = None  # enforce Telegram's flood limit with 429s
    sent: list[Sent] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: deque[Failure | None] = field(default_factory=deque)  # None: answer that request normally
    refused: int = 0
    rate_limited: int = 0
    url: str = ""
    _next_id: int = 1000
    _runner: web.AppRunner | None = None
    _recent: dict[str, deque[float]] = field(default_factory=dict)
    down: bool = False
    delay: float = 0.0  # seconds before answering sendMessage; a request cancelled meanwhile is not delivered
    reset_after_taking: int = 0  # the next n sendMessage calls are taken, then their connection reset unanswered
    resets: list[float] = field(default_factory=list)  # when a taken message's connection was reset
    echo_path_404: bool = False  # a misconfigured proxy in front: 404 with the request's path (the token) echoed
    # updates (presses, commands) for getUpdates, each with its update_id; confirmed ones are dropped
    updates: list[dict[str, Any]] = field(default_factory=list)
    callback_answers: list[dict[str, Any]] = field(default_factory=list)
    edits: list[Sent] = field(default_factory=list)
    photos: list[Photo] = field(default_factory=list)
    photo_refusal: str | None = None  # sendPhoto answers 400 with this description
    commands: list[dict[str, Any]] = field(default_factory=list)  # setMyCommands calls
    webhook: dict[str, Any] | None = None  # setWebhook's parameters while a webhook is set
    pollers: int = 0  # getUpdates calls answered 409 because another was waiting (a second poller)
    conflicts: int = 0
    _update_id: int = 500
    _open_callbacks: set[str] = field(default_factory=set)
    _waiting_poll: asyncio.Future[None] | None = None
    _new_update: asyncio.Event | None = None

    def fail_next(
        self, n: int, status: int, description: str = "", retry_after: int | None = None, migrate_to: int | None = None
    ) -> None:
        for _ in range(n):
            self.failures.append(Failure(status, description or f"Error {status}", retry_after, migrate_to))

    def pass_next(self, n: int) -> None:
        """The next n requests are answered normally, before any failure scripted after this call."""
        self.failures.extend([None] * n)

    async def start(self, port: int = 0) -> FakeTelegram:
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/bot{token}/{method}", self._handle)
        # a person's side of the chat, for `make stack --chat-actions`: read the chat, press a button, write
        app.router.add_get("/_fake/messages", self._fake_messages)
        app.router.add_get("/_fake/photos/{id}.png", self._fake_photo)
        app.router.add_post("/_fake/press", self._fake_press)
        app.router.add_post("/_fake/say", self._fake_say)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @staticmethod
    def _error(status: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=status)

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            data = await request.json()
            return dict(data) if isinstance(data, dict) else {}
        form = await request.post()
        out: dict[str, Any] = {}
        for k, v in form.items():
            if isinstance(v, web.FileField):  # an upload (sendPhoto's photo): its bytes
                out[k] = v.file.read()
                continue
            s = str(v)
            try:
                out[k] = json.loads(s) if k in ("reply_markup", "reply_parameters", "link_preview_options") else s
            except ValueError:
                out[k] = s
        return out

    async def _handle(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        method = request.match_info["method"]
        params = await self._params(request)
        self.requests.append({"method": method, "params": params, "at": time.time()})
        if self.down:
            return web.Response(status=502, text="Bad Gateway")
        if self.echo_path_404:
            return self._error(404, f"Not Found: no route for POST {request.path}")
        if token != self.token and token not in self.extra_tokens:
            self.refused += 1
            return self._error(401, "Unauthorized")
        if method == "getMe":
            return web.json_response(
                {"ok": True, "result": {"id": 123456, "is_bot": True, "first_name": "Fake", "username": "fake_bot"}}
            )
        if method == "getUpdates":
            return await self._get_updates(params)
        if method == "answerCallbackQuery":
            return self._answer_callback(params)
        if method == "setMyCommands":
            cmds = params.get("commands")
            cmds = json.loads(cmds) if isinstance(cmds, str) else cmds
            self.commands.append({"commands": cmds})
            return web.json_response({"ok": True, "result": True})
        if method == "setWebhook":
            secret = str(params.get("secret_token", ""))
            if secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
                return self._error(400, "Bad Request: secret token contains unallowed characters")
            self.webhook = dict(params)
            return web.json_response({"ok": True, "result": True})
        if method == "deleteWebhook":
            self.webhook = None
            return web.json_response({"ok": True, "result": True})
        if method not in ("sendMessage", "editMessageText", "sendPhoto"):
            return self._error(404, "Not Found")
        bad = self._bad_markup(params.get("reply_markup"))
        if bad:
            return self._error(400, f"Bad Request: {bad}")
        f = self.failures.popleft() if self.failures else None
        if f is not None:
            if f.status >= 500:
                return web.Response(status=f.status, text=f.description)
            params_out: dict[str, Any] = {}
            if f.retry_after is not None:
                params_out["retry_after"] = f.retry_after
                self.rate_limited += 1
            if f.migrate_to is not None:
                params_out["migrate_to_chat_id"] = f.migrate_to
            return self._error(f.status, f.description, params_out or None)
        if self.delay:
            await asyncio.sleep(self.delay)
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)  # the client went away while the request was held: not taken
        if method == "editMessageText":
            return self._edit(params)
        if method == "sendPhoto":
            return self._photo(params)
        answer = self._send(params, method)
        if answer.status == 200 and self.reset_after_taking > 0 and request.transport is not None:
            # the message is in the chat; the sender never hears so (a proxy or the network dropped the answer)
            self.reset_after_taking -= 1
            self.resets.append(time.time())
            request.transport.abort()
        return answer

    # -- a person's side of the chat (make stack --chat-actions) ----

    async def _fake_messages(self, request: web.Request) -> web.Response:
        out = []
        for m in self.sent:
            rows = (m.reply_markup or {}).get("inline_keyboard", [])
            out.append(
                {
                    "message_id": m.message_id,
                    "chat_id": m.chat_id,
                    "text": check_html(m.text) if m.parse_mode == "HTML" else m.text,
                    "buttons": [b["text"] for row in rows for b in row if "callback_data" in b],
                }
            )
        answers = [a["text"] for a in self.callback_answers]
        photos = [
            {
                "message_id": ph.message_id,
                "chat_id": ph.chat_id,
                "reply_to": ph.reply_to_message_id,
                "caption": ph.caption,
                "size": f"{ph.width}x{ph.height}",
                "url": f"/_fake/photos/{ph.message_id}.png",
            }
            for ph in self.photos
        ]
        return web.json_response(
            {"messages": out, "photos": photos, "answers": answers},
            dumps=lambda o: json.dumps(o, ensure_ascii=False, indent=1),
        )

    async def _fake_photo(self, request: web.Request) -> web.Response:
        wanted = request.match_info["id"]
        for ph in self.photos:
            if str(ph.message_id) == wanted:
                return web.Response(body=ph.png, content_type="image/png")
        return web.Response(status=404, text="no such photo")

    async def _fake_press(self, request: web.Request) -> web.Response:
        body = await request.json()
        message = next((m for m in self.sent if m.message_id == int(body.get("message_id", 0))), None)
        if message is None:
            return web.json_response({"error": "no such message"}, status=404)
        rows = (message.reply_markup or {}).get("inline_keyboard", [])
        data = next((b["callback_data"] for row in rows for b in row if b["text"] == body.get("button")), None)
        if data is None:
            return web.json_response({"error": "no such button"}, status=404)
        qid = self.press(
            message, data, user_id=int(body.get("user_id", 7001)), username=str(body.get("user", "alice")).lstrip("@")
        )
        return web.json_response({"pressed": body.get("button"), "callback_query": qid})

    async def _fake_say(self, request: web.Request) -> web.Response:
        body = await request.json()
        chat = int(body.get("chat_id", -1001234567890))
        self.say(str(body.get("text", "/help")), chat_id=chat, username=str(body.get("user", "alice")).lstrip("@"))
        return web.json_response({"said": body.get("text")})

    # -- updates: presses and commands ----------------------------------------------------------------------------

    def _push(self, update: dict[str, Any]) -> int:
        self._update_id += 1
        update = {"update_id": self._update_id, **update}
        self.updates.append(update)
        if self._new_update is not None:
            self._new_update.set()
        return self._update_id

    def press(self, message: Sent, data: str, user_id: int = 7001, username: str | None = "alice") -> str:
        """Someone presses a button of `message` whose callback data is `data`: a callback query for getUpdates.
        Returns the query's id."""
        qid = f"cb{self._update_id + 1}"
        self._open_callbacks.add(qid)
        self._push({"callback_query": self.callback_query(qid, message, data, user_id, username)})
        return qid

    def callback_query(
        self, qid: str, message: Sent, data: str, user_id: int = 7001, username: str | None = "alice"
    ) -> dict[str, Any]:
        self._open_callbacks.add(qid)
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": (username or "someone").title()}
        if username:
            user["username"] = username
        chat_id = message.chat_id if isinstance(message.chat_id, int) else -100999
        return {
            "id": qid,
            "from": user,
            "chat_instance": "1",
            "data": data,
            "message": {
                "message_id": message.message_id,
                "date": int(message.at),
                "chat": {"id": chat_id, "type": "supergroup", "title": "alerts"},
                "text": check_html(message.text) if message.parse_mode == "HTML" else message.text,
            },
        }

    def say(self, text: str, chat_id: int = -1001234567890, user_id: int = 7001, username: str | None = "alice") -> int:
        """Someone writes `text` (a command) in a chat: a message update for getUpdates."""
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": (username or "someone").title()}
        if username:
            user["username"] = username
        entities = (
            [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}] if text.startswith("/") else []
        )
        return self._push(
            {
                "message": {
                    "message_id": 9000 + self._update_id,
                    "date": int(time.time()),
                    "chat": {"id": chat_id, "type": "supergroup", "title": "alerts"},
                    "from": user,
                    "text": text,
                    "entities": entities,
                }
            }
        )

    async def _get_updates(self, p: dict[str, Any]) -> web.Response:
        if self.webhook is not None:
            self.conflicts += 1
            return self._error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        if self._waiting_poll is not None and not self._waiting_poll.done():
            # as Telegram does: the request that waited is ended with 409, the new one is served
            self._waiting_poll.set_result(None)
        offset = int(p["offset"]) if p.get("offset") not in (None, "") else None
        if offset is not None:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        timeout = float(p.get("timeout") or 0)
        loop = asyncio.get_running_loop()
        mine: asyncio.Future[None] = loop.create_future()
        self._waiting_poll = mine
        self._new_update = self._new_update or asyncio.Event()
        deadline = loop.time() + timeout
        while not self.updates and loop.time() < deadline and not mine.done():
            self._new_update.clear()
            waiter = asyncio.ensure_future(self._new_update.wait())
            either: set[asyncio.Future[Any]] = {waiter, mine}
            await asyncio.wait(either, timeout=max(0.0, deadline - loop.time()), return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        if mine.done() and self._waiting_poll is not mine:
            self.conflicts += 1
            return self._error(
                409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
            )
        if not mine.done():
            mine.set_result(None)
        return web.json_response({"ok": True, "result": list(self.updates)})

    def _answer_callback(self, p: dict[str, Any]) -> web.Response:
        qid = str(p.get("callback_query_id", ""))
        if qid not in self._open_callbacks:
            return self._error(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        text = p.get("text")
        if text is not None and len(str(text)) > 200:
            return self._error(400, "Bad Request: MESSAGE_TOO_LONG")
        self._open_callbacks.discard(qid)
        self.callback_answers.append(
            {"id": qid, "text": text, "show_alert": p.get("show_alert") in (True, "true", "True"), "at": time.time()}
        )
        return web.json_response({"ok": True, "result": True})

    @staticmethod
    def _bad_markup(markup: Any) -> str | None:
        if isinstance(markup, str):
            markup = json.loads(markup)
        if not isinstance(markup, dict):
            return None
        for row in markup.get("inline_keyboard", []):
            for b in row:
                data = b.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= 64:
                    return "BUTTON_DATA_INVALID"
                if data is None and not b.get("url"):
                    return "can't parse inline keyboard button: a button needs url or callback_data"
        return None

    def _edit(self, p: dict[str, Any]) -> web.Response:
        try:
            chat: int | str = int(p.get("chat_id"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            chat = str(p.get("chat_id"))
        mid = int(p.get("message_id") or 0)
        found = next((m for m in self.sent if m.chat_id == chat and m.message_id == mid), None)
        if found is None:
            return self._error(400, "Bad Request: message to edit not found")
        checked = self._text(p)
        if isinstance(checked, web.Response):
            return checked
        text, mode, visible = checked
        markup = p.get("reply_markup")
        markup = json.loads(markup) if isinstance(markup, str) else markup
        if found.text == text and found.reply_markup == markup:
            return self._error(
                400,
                "Bad Request: message is not modified: specified new message content and reply markup are exactly "
                "the same as a current content and reply markup of the message",
            )
        found.text, found.parse_mode, found.reply_markup = text, mode, markup if isinstance(markup, dict) else None
        self.edits.append(
            Sent(mid, chat, text, mode, False, None, None, found.reply_markup, time.time(), "editMessageText")
        )
        return web.json_response(
            {
                "ok": True,
                "result": {
                    "message_id": mid,
                    "date": int(found.at),
                    "text": visible,
                    "chat": {"id": chat if isinstance(chat, int) else -100999, "type": "supergroup"},
                },
            }
        )

    def _text(self, p: dict[str, Any]) -> tuple[str, str | None, str] | web.Response:
        """The message's text, parse mode and visible text, or Telegram's refusal of them."""
        text = p.get("text")
        if not isinstance(text, str) or not text.strip():
            return self._error(400, "Bad Request: message text is empty")
        mode = p.get("parse_mode")
        visible = text
        if mode == "HTML":
            try:
                visible = check_html(text)
            except EntityError as exc:
                self.refused += 1
                return self._error(400, f"Bad Request: can't parse entities: {exc}")
        elif mode is not None:
            return self._error(400, f"Bad Request: unsupported parse_mode {mode}")
        if utf16(visible) > 4096:
            self.refused += 1
            return self._error(400, "Bad Request: message is too long")
        return text, mode, visible

    def _photo(self, p: dict[str, Any]) -> web.Response:
        """sendPhoto as the Bot API takes an upload: at most 10 MB, an image it can read, width + height at most
        10000 and a ratio of at most 20, a caption of at most 1024 characters."""
        try:
            chat: int | str = int(p.get("chat_id"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            chat = str(p.get("chat_id"))
        if chat not in self.chats:
            self.refused += 1
            return self._error(400, "Bad Request: chat not found")
        if self.photo_refusal is not None:
            return self._error(400, f"Bad Request: {self.photo_refusal}")
        photo = p.get("photo")
        if isinstance(photo, str):
            return self._error(400, "Bad Request: wrong file identifier/HTTP URL specified")
        if not isinstance(photo, bytes) or not photo:
            return self._error(400, "Bad Request: there is no photo in the request")
        if len(photo) > 10 * 1024 * 1024:
            return self._error(413, "Request Entity Too Large")
        if not photo.startswith(b"\x89PNG\r\n\x1a\n") or photo[12:16] != b"IHDR":
            return self._error(400, "Bad Request: IMAGE_PROCESS_FAILED")
        width, height = int.from_bytes(photo[16:20], "big"), int.from_bytes(photo[20:24], "big")
        if width + height > 10000 or max(width, height) > 20 * max(1, min(width, height)):
            return self._error(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        caption = str(p.get("caption") or "")
        if len(caption) > 1024:
            return self._error(400, "Bad Request: message caption is too long")
        reply = p.get("reply_parameters") or {}
        reply_to = reply.get("message_id") if isinstance(reply, dict) else None
        self._next_id += 1
        dn = p.get("disable_notification")
        self.photos.append(
            Photo(
                self._next_id,
                chat,
                caption,
                photo,
                width,
                height,
                int(reply_to) if reply_to is not None else None,
                dn in (True, "true", "True", 1, "1"),
                time.time(),
            )
        )
        return web.json_response(
            {
                "ok": True,
                "result": {
                    "message_id": self._next_id,
                    "date": int(time.time()),
                    "photo": [
                        {
                            "file_id": f"photo{self._next_id}",
                            "file_unique_id": f"u{self._next_id}",
                            "width": width,
                            "height": height,
                        }
                    ],
                    "chat": {"id": chat if isinstance(chat, int) else -100999, "type": "supergroup"},
                },
            }
        )

    def _send(self, p: dict[str, Any], method: str) -> web.Response:
        chat_raw = p.get("chat_id")
        if chat_raw is None:
            return self._error(400, "Bad Request: chat_id is empty")
        chat: int | str
        try:
            chat = int(chat_raw)
        except (TypeError, ValueError):
            chat = str(chat_raw)
        if chat not in self.chats:
            self.refused += 1
            return self._error(400, "Bad Request: chat not found")
        checked = self._text(p)
        if isinstance(checked, web.Response):
            return checked
        text, mode, visible = checked
        if self.group_limit_per_minute and str(chat).startswith(("-", "@")):
            now = time.monotonic()
            log = self._recent.setdefault(str(chat), deque())
            while log and log[0] <= now - 60:
                log.popleft()
            if len(log) >= self.group_limit_per_minute:
                wait = int(log[0] + 60 - now) + 1
                self.rate_limited += 1
                return self._error(429, f"Too Many Requests: retry after {wait}", {"retry_after": wait})
            log.append(now)
        reply = p.get("reply_parameters") or {}
        if isinstance(reply, str):
            reply = json.loads(reply)
        reply_to = reply.get("message_id") if isinstance(reply, dict) else None
        if reply_to is None and p.get("reply_to_message_id") is not None:
            reply_to = int(p["reply_to_message_id"])
        self._next_id += 1
        dn = p.get("disable_notification")
        sent = Sent(
            message_id=self._next_id,
            chat_id=chat,
            text=text,
            parse_mode=mode,
            disable_notification=dn in (True, "true", "True", 1, "1"),
            message_thread_id=int(p["message_thread_id"]) if p.get("message_thread_id") is not None else None,
            reply_to_message_id=int(reply_to) if reply_to is not None else None,
            reply_markup=p.get("reply_markup") if isinstance(p.get("reply_markup"), dict) else None,
            at=time.time(),
            method=method,
        )
        self.sent.append(sent)
        return web.json_response(
            {
                "ok": True,
                "result": {
                    "message_id": sent.message_id,
                    "date": int(sent.at),
                    "text": visible,
                    "chat": {"id": chat if isinstance(chat, int) else -100999, "type": "supergroup"},
                },
            }
        )


class ThreadedFake:
    """A fake Telegram server on its own event loop in a thread, for synchronous tests that run processes."""

    def __init__(self, fake: FakeTelegram, port: int = 0) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self.fake = fake
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(port), self.loop).result(10)

    def texts(self) -> list[str]:
        return [check_html(s.text) if s.parse_mode == "HTML" else s.text for s in list(self.fake.sent)]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
