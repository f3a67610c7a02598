"""Fake ntfy and Pushover servers: real HTTP on loopback, as strict as the services' documented APIs.

ntfy: JSON publish at `POST /` (topic, message, title, priority 1-5, tags, click, up to 3 actions), a topic's
characters and length, bearer or basic auth on protected topics, a message over 4,096 bytes refused (the real
server would make it an attachment, which is not what a notifier means to send); refusals as
`{"code", "http", "error"}`.

Pushover: `POST /1/messages.json` (form), `GET /1/receipts/{receipt}.json`, `POST /1/receipts/{r}/cancel.json` and
`POST /1/receipts/cancel_by_tag/{tag}.json`; token and user of 30 characters, message at most 1,024 characters,
title 250, url 512, url_title 100, priority -2..2, emergency (2) only with retry >= 30 and expire <= 10,800;
refusals as HTTP 4xx with `status: 0` and an `errors` list; the quota headers on every answer.

Both can be scripted: the next n requests fail with a status (and a retry-after), pass, or are answered late.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Failure:
    status: int
    retry_after: int | None = None
    error: str = ""


@dataclass
class _Scripted:
    failures: deque[Failure | None] = field(default_factory=deque)
    delay: float = 0.0
    url: str = ""
    _runner: web.AppRunner | None = None

    def fail_next(self, n: int, status: int, retry_after: int | None = None, error: str = "") -> None:
        for _ in range(n):
            self.failures.append(Failure(status, retry_after, error))

    def pass_next(self, n: int) -> None:
        self.failures.extend([None] * n)

    async def _serve(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _next(self) -> Failure | None:
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.failures.popleft() if self.failures else None


TOPIC = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass
class Published:
    topic: str
    title: str
    message: str
    priority: int
    tags: list[str]
    click: str | None
    actions: list[dict[str, Any]]
    at: float = field(default_factory=time.time)  # when the server took it

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.message}"


@dataclass
class FakeNtfy(_Scripted):
    """`protected` topics need `token` (bearer) or `username`/`password` (basic)."""

    token: str = "tk_" + "a" * 29
    username: str = "alerts"
    password: str = "ntfy-pass-word"
    protected: set[str] = field(default_factory=lambda: {"trading-oncall"})
    published: list[Published] = field(default_factory=list)

    async def start(self) -> FakeNtfy:
        app = web.Application()
        app.router.add_post("/", self._publish)
        await self._serve(app)
        return self

    def _refuse(self, status: int, code: int, error: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"code": code, "http": status, "error": error}, status=status, headers=headers)

    def _authorised(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if auth == f"Bearer {self.token}":
            return True
        basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return auth == f"Basic {basic}"

    async def _publish(self, request: web.Request) -> web.Response:
        f = await self._next()
        if f is not None:
            headers = {"Retry-After": str(f.retry_after)} if f.retry_after is not None else None
            return self._refuse(f.status, f.status * 100 + 1, f.error or "scripted failure", headers)
        try:
            body = await request.json()
        except ValueError:
            return self._refuse(400, 40024, "invalid request: request body must be message JSON")
        topic = body.get("topic")
        if not isinstance(topic, str) or not TOPIC.fullmatch(topic):
            return self._refuse(400, 40009, "invalid request: topic invalid")
        if topic in self.protected and not self._authorised(request):
            return self._refuse(403 if request.headers.get("Authorization") else 401, 40301, "forbidden")
        known = {"topic", "message", "title", "priority", "tags", "click", "actions", "markdown", "icon", "delay"}
        if set(body) - known:
            return self._refuse(400, 40024, f"invalid request: unknown fields {sorted(set(body) - known)}")
        message = body.get("message", "")
        if not isinstance(message, str) or len(message.encode()) > 4096:
            return self._refuse(413, 41301, "message too large for this fake (the server would attach it)")
        priority = body.get("priority", 3)
        if not isinstance(priority, int) or not 1 <= priority <= 5:
            return self._refuse(400, 40007, "invalid priority")
        actions = body.get("actions", [])
        if len(actions) > 3 or any(a.get("action") not in ("view", "http", "broadcast") for a in actions):
            return self._refuse(400, 40018, "invalid action")
        for a in actions:
            if not a.get("label") or not str(a.get("url", "")).startswith(("http://", "https://")):
                return self._refuse(400, 40018, "invalid action: label and url required")
        self.published.append(
            Published(topic, body.get("title", ""), message, priority, body.get("tags", []), body.get("click"), actions)
        )
        return web.json_response({"id": secrets.token_hex(6), "time": int(time.time()), "event": "message"})


@dataclass
class Receipt:
    receipt: str
    tag: str | None
    expires_at: float
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    cancelled: bool = False


@dataclass
class Pushed:
    user: str
    title: str
    message: str
    priority: int
    url: str | None
    receipt: str | None

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.message}"


@dataclass
class FakePushover(_Scripted):
    token: str = "a" * 30
    user: str = "u" * 30
    pushed: list[Pushed] = field(default_factory=list)
    receipts: dict[str, Receipt] = field(default_factory=dict)
    polls: int = 0
    remaining: int = 7500

    async def start(self) -> FakePushover:
        app = web.Application()
        app.router.add_post("/1/messages.json", self._messages)
        app.router.add_get("/1/receipts/{receipt}.json", self._receipt)
        app.router.add_post("/1/receipts/cancel_by_tag/{tag}.json", self._cancel_by_tag)
        app.router.add_post("/1/receipts/{receipt}/cancel.json", self._cancel)
        await self._serve(app)
        return self

    def acknowledge(self, receipt: str, by: str = "u" * 30, device: str = "phone") -> None:
        """Someone acknowledged the emergency on their phone."""
        r = self.receipts[receipt]
        r.acknowledged_by, r.acknowledged_at = f"{by}|{device}", time.time()

    def _answer(self, body: dict[str, Any], status: int = 200) -> web.Response:
        headers = {
            "X-Limit-App-Limit": "10000",
            "X-Limit-App-Remaining": str(self.remaining),
            "X-Limit-App-Reset": str(int(time.time()) + 86400),
        }
        return web.json_response({**body, "request": secrets.token_hex(16)}, status=status, headers=headers)

    def _refuse(self, status: int, errors: list[str], **fields: str) -> web.Response:
        return self._answer({"status": 0, "errors": errors, **fields}, status)

    async def _scripted(self) -> web.Response | None:
        f = await self._next()
        if f is None:
            return None
        if f.status == 429:
            headers = {"X-Limit-App-Remaining": "0", "X-Limit-App-Reset": str(int(time.time()) + 3600)}
            return web.json_response({"status": 0, "errors": ["quota exceeded"]}, status=429, headers=headers)
        return self._refuse(f.status, [f.error or "scripted failure"])

    async def _messages(self, request: web.Request) -> web.Response:
        if (scripted := await self._scripted()) is not None:
            return scripted
        form = dict(await request.post())
        if form.get("token") != self.token:
            return self._refuse(400, ["application token is invalid"], token="invalid")
        if form.get("user") != self.user:
            return self._refuse(
                400, ["user identifier is not a valid user, group, or subscribed user key"], user="invalid"
            )
        message, title = str(form.get("message", "")), str(form.get("title", ""))
        if not message:
            return self._refuse(400, ["message cannot be blank"], message="cannot be blank")
        if len(message) > 1024:
            return self._refuse(400, ["message cannot be longer than 1024 characters"], message="too long")
        if len(title) > 250:
            return self._refuse(400, ["title cannot be longer than 250 characters"], title="too long")
        if len(str(form.get("url", ""))) > 512 or len(str(form.get("url_title", ""))) > 100:
            return self._refuse(400, ["url or url_title too long"], url="too long")
        try:
            priority = int(str(form.get("priority", "0")))
        except ValueError:
            return self._refuse(400, ["priority is invalid"], priority="invalid")
        if not -2 <= priority <= 2:
            return self._refuse(400, ["priority is invalid"], priority="invalid")
        receipt = None
        if priority == 2:
            try:
                retry, expire = int(str(form["retry"])), int(str(form["expire"]))
            except (KeyError, ValueError):
                return self._refuse(400, ["retry and expire are required with emergency priority"], retry="invalid")
            if retry < 30 or expire > 10800:
                return self._refuse(400, ["retry must be at least 30, expire at most 10800"], retry="invalid")
            receipt = secrets.token_hex(15)
            self.receipts[receipt] = Receipt(receipt, str(form.get("tags") or "") or None, time.time() + expire)
        self.remaining -= 1
        self.pushed.append(Pushed(str(form["user"]), title, message, priority, form.get("url"), receipt))  # type: ignore[arg-type]
        return self._answer({"status": 1, **({"receipt": receipt} if receipt else {})})

    async def _receipt(self, request: web.Request) -> web.Response:
        if (scripted := await self._scripted()) is not None:
            return scripted
        if request.query.get("token") != self.token:
            return self._refuse(400, ["application token is invalid"], token="invalid")
        r = self.receipts.get(request.match_info["receipt"])
        if r is None:
            return self._refuse(404, ["receipt not found; may be invalid or expired"], receipt="not found")
        self.polls += 1
        by, _, device = (r.acknowledged_by or "").partition("|")
        return self._answer(
            {
                "status": 1,
                "acknowledged": int(r.acknowledged_at is not None),
                "acknowledged_at": int(r.acknowledged_at or 0),
                "acknowledged_by": by,
                "acknowledged_by_device": device,
                "expired": int(time.time() > r.expires_at),
                "expires_at": int(r.expires_at),
                "called_back": 0,
            }
        )

    async def _cancel(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        if form.get("token") != self.token:
            return self._refuse(400, ["application token is invalid"], token="invalid")
        r = self.receipts.get(request.match_info["receipt"])
        if r is None:
            return self._refuse(404, ["receipt not found"], receipt="not found")
        r.cancelled = True
        return self._answer({"status": 1})

    async def _cancel_by_tag(self, request: web.Request) -> web.Response:
        if (scripted := await self._scripted()) is not None:
            return scripted
        form = dict(await request.post())
        if form.get("token") != self.token:
            return self._refuse(400, ["application token is invalid"], token="invalid")
        found = [r for r in self.receipts.values() if r.tag == request.match_info["tag"] and not r.cancelled]
        for r in found:
            r.cancelled = True
        return self._answer({"status": 1, "canceled": len(found)})


class Threaded:
    """A fake on its own event loop in a thread, for synchronous tests that run the notifier as a process."""

    def __init__(self, fake: FakeNtfy | FakePushover) -> None:
        import threading

        self.fake = fake
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(fake.start(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
