"""A fake Slack server: incoming webhooks and the Web API (chat.postMessage, chat.update, and files upload v2:
files.getUploadURLExternal, the upload URL, files.completeUploadExternal), real HTTP on loopback.

Strict like Slack: the bot token and the channel are checked; Block Kit limits (50 blocks, section text 3,000,
header 150) are enforced; an upload must carry exactly the length it announced, and is completed once, into a
channel by its ID and a thread that exists there; a test can script 429 with Retry-After, or 5xx. Accepted
messages and files are kept.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


class BlockError(ValueError):
    pass


def check_blocks(blocks: list[dict[str, Any]]) -> None:
    if len(blocks) > 50:
        raise BlockError("invalid_blocks")
    for b in blocks:
        t = b.get("type")
        if t == "header":
            if b["text"]["type"] != "plain_text" or len(b["text"]["text"]) > 150:
                raise BlockError("invalid_blocks")
        elif t == "section":
            if len(b["text"]["text"]) > 3000:
                raise BlockError("invalid_blocks")
        elif t == "context":
            if len(b["elements"]) > 10:
                raise BlockError("invalid_blocks")
        elif t not in ("divider", "actions"):
            raise BlockError("invalid_blocks")


def all_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    out = list(body.get("blocks") or [])
    for a in body.get("attachments") or []:
        out += a.get("blocks") or []
    return out


@dataclass
class Posted:
    """One accepted message."""

    via: str  # webhook | api
    channel: str
    text: str
    blocks: list[dict[str, Any]]
    color: str | None
    ts: str
    thread_ts: str | None
    at: float

    @property
    def all_text(self) -> str:
        parts = [self.text]
        for b in self.blocks:
            if "text" in b:
                parts.append(b["text"]["text"])
            for e in b.get("elements", []):
                text = e.get("text", "")
                parts.append(text["text"] if isinstance(text, dict) else text)  # a button's label is plain_text
        return "\n".join(parts)


@dataclass
class Upload:
    """A file announced by files.getUploadURLExternal; `data` once its bytes arrived."""

    filename: str
    length: int
    alt_txt: str
    data: bytes | None = None


@dataclass
class SharedFile:
    """A completed upload, shared into a channel (and a thread)."""

    id: str
    channel: str
    thread_ts: str | None
    title: str
    alt_txt: str
    data: bytes
    at: float


@dataclass
class Failure:
    status: int
    retry_after: int | None = None
    error: str = ""


@dataclass
class FakeSlack:
    """The fake server; `webhook_url` and `api_url` go into the notifier's config."""

    token: str = "xoxb-test-token"
    hook_path: str = "/services/T000/B000/XXXXXXXX"
    channels: dict[str, str] = field(default_factory=lambda: {"#trading-alerts": "C0TRADING", "C0TRADING": "C0TRADING"})
    posted: list[Posted] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    failures: deque[Failure | None] = field(default_factory=deque)  # None: answer that request normally
    refused: int = 0
    url: str = ""
    delay: float = 0.0  # seconds before answering, to test timeouts
    responses: list[dict[str, Any]] = field(default_factory=list)  # what was posted to a response_url
    files: list[SharedFile] = field(default_factory=list)
    uploads: dict[str, Upload] = field(default_factory=dict)  # file id -> announced, not yet completed
    file_refusal: str = ""  # an error code to answer every files.completeUploadExternal with
    _runner: web.AppRunner | None = None
    _ts: int = 0

    @property
    def webhook_url(self) -> str:
        return self.url + self.hook_path

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    def fail_next(self, n: int, status: int, retry_after: int | None = None, error: str = "") -> None:
        for _ in range(n):
            self.failures.append(Failure(status, retry_after, error))

    def pass_next(self, n: int) -> None:
        """The next n requests are answered normally, before any failure scripted after this call."""
        self.failures.extend([None] * n)

    async def start(self) -> FakeSlack:
        app = web.Application()
        app.router.add_post(self.hook_path, self._hook)
        app.router.add_post("/services/{rest:.*}", self._bad_hook)
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/respond/{id}", self._respond)
        app.router.add_post("/upload/v1/{file_id}", self._upload)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def response_url(self, name: str = "1") -> str:
        """A response_url, as Slack puts in every interaction and command it posts."""
        return f"{self.url}/respond/{name}"

    async def _respond(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not body.get("text") and not body.get("blocks"):
            return web.Response(status=400, text="no_text")
        try:
            check_blocks(body.get("blocks") or [])
        except BlockError:
            return web.Response(status=400, text="invalid_blocks")
        self.responses.append({"id": request.match_info["id"], **body})
        return web.Response(text="ok")

    def _next_ts(self) -> str:
        self._ts += 1
        return f"{int(time.time())}.{self._ts:06d}"

    def _scripted(self, api: bool) -> web.Response | None:
        f = self.failures.popleft() if self.failures else None
        if f is None:
            return None
        headers = {"Retry-After": str(f.retry_after)} if f.retry_after is not None else {}
        if api and f.status == 200:
            return web.json_response({"ok": False, "error": f.error}, headers=headers)
        if api and f.status == 429:
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers=headers)
        return web.Response(status=f.status, text=f.error or "error", headers=headers)

    async def _bad_hook(self, request: web.Request) -> web.Response:
        self.refused += 1
        return web.Response(status=404, text="no_service")

    async def _hook(self, request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        scripted = self._scripted(api=False)
        if scripted is not None:
            return scripted
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not body.get("text") and not all_blocks(body):
            return web.Response(status=400, text="no_text")
        try:
            check_blocks(all_blocks(body))
        except BlockError:
            self.refused += 1
            return web.Response(status=400, text="invalid_blocks")
        atts = body.get("attachments") or [{}]
        self.posted.append(
            Posted(
                "webhook",
                "webhook",
                body.get("text", ""),
                all_blocks(body),
                atts[0].get("color"),
                self._next_ts(),
                None,
                time.time(),
            )
        )
        return web.Response(text="ok")

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.refused += 1
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if self.delay:
            await asyncio.sleep(self.delay)
        scripted = self._scripted(api=True)
        if scripted is not None:
            return scripted
        # the SDK sends some methods' arguments in the query string, as Slack allows
        body: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            body.update(await request.json())
        else:
            body.update(await request.post())
        if method.startswith("files."):
            return self._files(method, body)
        channel = self.channels.get(str(body.get("channel")))
        if channel is None:
            self.refused += 1
            return web.json_response({"ok": False, "error": "channel_not_found"})
        try:
            check_blocks(all_blocks(body))
        except BlockError:
            self.refused += 1
            return web.json_response({"ok": False, "error": "invalid_blocks"})
        if method == "chat.postMessage":
            ts = self._next_ts()
            atts = body.get("attachments") or [{}]
            self.posted.append(
                Posted(
                    "api",
                    channel,
                    body.get("text", ""),
                    all_blocks(body),
                    atts[0].get("color"),
                    ts,
                    body.get("thread_ts"),
                    time.time(),
                )
            )
            return web.json_response({"ok": True, "channel": channel, "ts": ts, "message": {"text": body.get("text")}})
        if method == "chat.update":
            if not any(p.ts == body.get("ts") for p in self.posted):
                return web.json_response({"ok": False, "error": "message_not_found"})
            self.updates.append(
                {"channel": channel, "ts": body.get("ts"), "text": body.get("text"), "blocks": all_blocks(body)}
            )
            return web.json_response({"ok": True, "channel": channel, "ts": body.get("ts")})
        return web.json_response({"ok": False, "error": "unknown_method"}, status=404)

    def _files(self, method: str, body: dict[str, Any]) -> web.Response:
        if method == "files.getUploadURLExternal":
            filename, length = str(body.get("filename") or ""), str(body.get("length") or "")
            if not filename or not length.isdigit() or int(length) <= 0:
                return web.json_response({"ok": False, "error": "invalid_arguments"})
            if len(str(body.get("alt_txt") or "")) > 1000:
                return web.json_response({"ok": False, "error": "invalid_arguments"})
            file_id = f"F{len(self.uploads) + len(self.files) + 1:08d}"
            self.uploads[file_id] = Upload(filename, int(length), str(body.get("alt_txt") or ""))
            return web.json_response({"ok": True, "upload_url": f"{self.url}/upload/v1/{file_id}", "file_id": file_id})
        if method == "files.completeUploadExternal":
            try:
                wanted = json.loads(str(body.get("files")))
                ids = [(str(f["id"]), str(f.get("title") or "")) for f in wanted]
            except (ValueError, TypeError, KeyError):
                return web.json_response({"ok": False, "error": "invalid_arguments"})
            if self.file_refusal:
                return web.json_response({"ok": False, "error": self.file_refusal})
            channel = str(body.get("channel_id") or "")
            if channel not in self.channels.values():  # an ID, not a name
                return web.json_response({"ok": False, "error": "channel_not_found"})
            thread_ts = body.get("thread_ts")
            if thread_ts is not None and not any(p.ts == thread_ts and p.channel == channel for p in self.posted):
                return web.json_response({"ok": False, "error": "invalid_thread_ts"})
            if not ids or any(i not in self.uploads or self.uploads[i].data is None for i, _ in ids):
                return web.json_response({"ok": False, "error": "file_not_found"})
            done = []
            for file_id, title in ids:
                up = self.uploads.pop(file_id)
                assert up.data is not None
                done.append(SharedFile(file_id, channel, thread_ts, title, up.alt_txt, up.data, time.time()))
            self.files += done
            return web.json_response({"ok": True, "files": [{"id": f.id, "title": f.title} for f in done]})
        return web.json_response({"ok": False, "error": "unknown_method"}, status=404)

    async def _upload(self, request: web.Request) -> web.Response:
        up = self.uploads.get(request.match_info["file_id"])
        if up is None or up.data is not None:
            return web.Response(status=404, text="upload_not_found")
        data = await request.read()
        if len(data) != up.length:
            return web.Response(status=400, text=f"expected {up.length} bytes, got {len(data)}")
        up.data = data
        return web.Response(text=f"OK - {len(data)}")


def signed(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack signs a request with: v0=HMAC-SHA256 of v0:{timestamp}:{body} with the signing secret."""
    import hashlib
    import hmac

    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
