"""What every HTTP answer and request gets, before any handler: a URL carrying a NUL character is refused with a
400 (no store can hold one, and no id or search contains one), every answer says `nosniff`, and the web view's
pages carry a Content-Security-Policy (nothing but the notifier's own page, no scripts, no framing) and are never
cached."""

from __future__ import annotations

import json
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

UI_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make browsers send "Origin: null" with our forms
]
NOSNIFF = (b"x-content-type-options", b"nosniff")


def hygiene(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if str(scope["type"]) != "http":
            await app(scope, receive, send)
            return
        raw = bytes(scope.get("raw_path") or scope.get("path", "").encode()) + b"?" + bytes(scope["query_string"])
        if b"\x00" in raw or b"%00" in raw.lower():
            body = json.dumps({"error": "a NUL character (%00) is not allowed in a URL", "field": "url"}).encode()
            start: Any = {
                "type": "http.response.start",
                "status": 400,
                "headers": [(b"content-type", b"application/json"), NOSNIFF],
            }
            await send(start)
            end: Any = {"type": "http.response.body", "body": body}
            await send(end)
            return
        ui = str(scope.get("path", "")).startswith("/ui")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response: Any = message
                headers: list[Any] = [h for h in response.get("headers", []) if h[0].lower() != NOSNIFF[0]]
                headers.append(NOSNIFF)
                if ui:
                    names = {name for name, _ in UI_HEADERS}
                    headers = [h for h in headers if h[0].lower() not in names] + UI_HEADERS
                response["headers"] = headers
            await send(message)

        await app(scope, receive, with_headers)

    return middleware
