"""The fake Bot API server: real HTTP on loopback, strict like the real one (see the package's docstring)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.telegram.messages import Failure, Photo, Sent
from tests.fakes.telegram.person import PersonSide
from tests.fakes.telegram.rules import EntityError, api_error, bad_markup, check_html, utf16


@dataclass
class FakeTelegram(PersonSide):
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
            return api_error(404, f"Not Found: no route for POST {request.path}")
        if token != self.token and token not in self.extra_tokens:
            self.refused += 1
            return api_error(401, "Unauthorized")
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
                return api_error(400, "Bad Request: secret token contains unallowed characters")
            self.webhook = dict(params)
            return web.json_response({"ok": True, "result": True})
        if method == "deleteWebhook":
            self.webhook = None
            return web.json_response({"ok": True, "result": True})
        if method not in ("sendMessage", "editMessageText", "sendPhoto"):
            return api_error(404, "Not Found")
        bad = bad_markup(params.get("reply_markup"))
        if bad:
            return api_error(400, f"Bad Request: {bad}")
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
            return api_error(f.status, f.description, params_out or None)
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

    def _edit(self, p: dict[str, Any]) -> web.Response:
        try:
            chat: int | str = int(p.get("chat_id"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            chat = str(p.get("chat_id"))
        mid = int(p.get("message_id") or 0)
        found = next((m for m in self.sent if m.chat_id == chat and m.message_id == mid), None)
        if found is None:
            return api_error(400, "Bad Request: message to edit not found")
        checked = self._text(p)
        if isinstance(checked, web.Response):
            return checked
        text, mode, visible = checked
        markup = p.get("reply_markup")
        markup = json.loads(markup) if isinstance(markup, str) else markup
        if found.text == text and found.reply_markup == markup:
            return api_error(
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
            return api_error(400, "Bad Request: message text is empty")
        mode = p.get("parse_mode")
        visible = text
        if mode == "HTML":
            try:
                visible = check_html(text)
            except EntityError as exc:
                self.refused += 1
                return api_error(400, f"Bad Request: can't parse entities: {exc}")
        elif mode is not None:
            return api_error(400, f"Bad Request: unsupported parse_mode {mode}")
        if utf16(visible) > 4096:
            self.refused += 1
            return api_error(400, "Bad Request: message is too long")
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
            return api_error(400, "Bad Request: chat not found")
        if self.photo_refusal is not None:
            return api_error(400, f"Bad Request: {self.photo_refusal}")
        photo = p.get("photo")
        if isinstance(photo, str):
            return api_error(400, "Bad Request: wrong file identifier/HTTP URL specified")
        if not isinstance(photo, bytes) or not photo:
            return api_error(400, "Bad Request: there is no photo in the request")
        if len(photo) > 10 * 1024 * 1024:
            return api_error(413, "Request Entity Too Large")
        if not photo.startswith(b"\x89PNG\r\n\x1a\n") or photo[12:16] != b"IHDR":
            return api_error(400, "Bad Request: IMAGE_PROCESS_FAILED")
        width, height = int.from_bytes(photo[16:20], "big"), int.from_bytes(photo[20:24], "big")
        if width + height > 10000 or max(width, height) > 20 * max(1, min(width, height)):
            return api_error(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        caption = str(p.get("caption") or "")
        if len(caption) > 1024:
            return api_error(400, "Bad Request: message caption is too long")
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
            return api_error(400, "Bad Request: chat_id is empty")
        chat: int | str
        try:
            chat = int(chat_raw)
        except (TypeError, ValueError):
            chat = str(chat_raw)
        if chat not in self.chats:
            self.refused += 1
            return api_error(400, "Bad Request: chat not found")
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
                return api_error(429, f"Too Many Requests: retry after {wait}", {"retry_after": wait})
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
