"""What the Bot API accepts and how it refuses: Telegram's HTML (only the tags it knows, balanced, only its entities),
a length counted in UTF-16 units, inline keyboards, and the shape of an error."""

from __future__ import annotations

import json
import re
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


def api_error(status: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    """An error as the Bot API answers it."""
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)


def bad_markup(markup: Any) -> str | None:
    """What Telegram says of an inline keyboard it refuses, or None."""
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
