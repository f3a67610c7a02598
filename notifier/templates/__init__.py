"""Rendering: the sandboxed Jinja2 environments (one per markup), the default templates, and length-aware assembly.

Templates are data. Each channel's environment escapes every `{{ }}` for its markup (Telegram and email HTML by
autoescape; Slack mrkdwn by a finalize hook), so a label such as `<script>&"x"` can never break a message. When a
message is too long for the provider, detail is dropped first (descriptions, labels), then the group is split between
alerts into numbered parts, and past `max_parts` the last part says "+N more". A split never falls inside a tag: each
part is rendered whole from its own alerts.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace
from importlib.resources import files
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from notifier.domain import Message
from notifier.settings import TemplateOverride, TemplatesSettings
from notifier.templates.context import AlertView, alert_view, group_context, sort_alerts

# Telegram Bot API: sendMessage text is 1-4096 characters after entity parsing (core.telegram.org/bots/api#sendmessage);
# counted here in UTF-16 code units on the raw HTML, which is never shorter than the parsed text.
TELEGRAM_MAX_TEXT = 4096
# Slack Block Kit (api.slack.com/reference/block-kit/blocks): 50 blocks a message, section text 3,000 characters,
# header 150; messages past ~13k characters of blocks fail with msg_blocks_too_long, so we stay under 12k.
SLACK_MAX_BLOCKS = 50
SLACK_MAX_SECTION = 3000
SLACK_MAX_HEADER = 150
SLACK_MAX_TOTAL = 12000
# Gmail clips HTML bodies over about 102 KB.
EMAIL_MAX_HTML = 100_000
MAX_SUMMARY = 400
MAX_DESCRIPTION = 1200
DEFAULT_MAX_PARTS = 10
STORM_MAX_PARTS = 2  # a storm summary must not spend the provider's limit on itself: the rest is "+N more"

_TAG = re.compile(r"<[^>]+>")
_MRKDWN = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def escape_mrkdwn(value: str) -> str:
    return value.translate(_MRKDWN)


def _slack_finalize(value: Any) -> Any:
    if isinstance(value, Markup):
        return str(value)
    if value is None:
        return ""
    return escape_mrkdwn(str(value))


def _slack_link(url: str, text: str) -> Markup:
    return Markup(f"<{escape_mrkdwn(str(url)).replace('|', '%7C')}|{escape_mrkdwn(str(text))}>")  # noqa: S704 -- parts escaped above


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def html_to_plain(text: str) -> str:
    """Telegram's fallback when it rejects our markup: the same words without tags."""
    return html.unescape(_TAG.sub("", text))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _env(kind: str) -> SandboxedEnvironment:
    common: dict[str, Any] = {"undefined": StrictUndefined, "keep_trailing_newline": False, "trim_blocks": False}
    if kind == "html":
        env = SandboxedEnvironment(autoescape=True, **common)
    elif kind == "mrkdwn":
        env = SandboxedEnvironment(autoescape=False, finalize=_slack_finalize, **common)
        env.globals["link"] = _slack_link
    else:
        env = SandboxedEnvironment(autoescape=False, **common)
    return env


def _default_source(name: str) -> str:
    return (files("notifier.templates") / name).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class SlackPart:
    """One Slack message: fallback text (notifications, screen readers) and the coloured attachment's blocks."""

    text: str
    color: str
    blocks: list[dict[str, Any]]

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "attachments": [{"color": self.color, "blocks": self.blocks}]}


@dataclass(frozen=True, slots=True)
class EmailContent:
    subject: str
    text: str
    html: str


class Renderer:
    """Compiled templates of one receiver (defaults where it overrides nothing) and the length-aware assembly."""

    def __init__(self, overrides: TemplatesSettings | None = None, *, max_parts: int = DEFAULT_MAX_PARTS) -> None:
        self._html = _env("html")
        self._mrkdwn = _env("mrkdwn")
        self._text = _env("text")
        o = overrides or TemplatesSettings()
        self.max_parts = max_parts
        self.telegram = self._compile(self._html, "telegram.j2", o.telegram, "templates.telegram")
        self.slack = self._compile(self._mrkdwn, "slack.j2", o.slack, "templates.slack")
        self.subject = self._compile(self._text, "email_subject.j2", o.email_subject, "templates.email_subject")
        self.text = self._compile(self._text, "text.j2", o.email_text, "templates.email_text")
        self.email_html = self._compile(self._html, "email_html.j2", o.email_html, "templates.email_html")
        self.log = self._compile(self._text, "text.j2", o.log, "templates.log")
        self._tg_default = self._html.from_string(_default_source("telegram.j2"))
        self._digest_subject = self._text.from_string(_default_source("digest_subject.j2"))
        self._digest_text = self._text.from_string(_default_source("digest_text.j2"))
        self._digest_html = self._html.from_string(_default_source("digest_html.j2"))
        self._slack_default = self._mrkdwn.from_string(_default_source("slack.j2"))

    @staticmethod
    def _compile(env: SandboxedEnvironment, default: str, override: TemplateOverride | None, key: str) -> Template:
        source = override.source if override else _default_source(default)
        try:
            return env.from_string(source)
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            raise ValueError(f"{key}: template does not compile{f' (line {line})' if line else ''}: {exc}") from None

    def _macro(self, tmpl: Template, default: Template, name: str) -> Any:
        module = tmpl.module
        return getattr(module, name, None) or getattr(default.module, name)

    def _views(self, message: Message, now: float) -> list[AlertView]:
        views = [alert_view(a, message.group.external_url, now) for a in sort_alerts(message.group.alerts)]
        return [
            replace(v, summary=_clip(v.summary, MAX_SUMMARY), description=_clip(v.description, MAX_DESCRIPTION))
            for v in views
        ]

    # -- Telegram -------------------------------------------------------------------------------------------------
    def telegram_parts(self, message: Message, now: float, limit: int = TELEGRAM_MAX_TEXT) -> list[str]:
        header = self._macro(self.telegram, self._tg_default, "header")
        alert = self._macro(self.telegram, self._tg_default, "alert")
        footer = self._macro(self.telegram, self._tg_default, "footer")
        views = self._views(message, now)

        def assemble(chunk: list[AlertView], detail: bool, part: int, parts: int, more: int) -> str:
            g = group_context(message, now, chunk, detail=detail, part=part, parts=parts, more=more)
            body = "\n".join(str(alert(a, detail)).strip("\n") for a in chunk)
            return "\n".join(s for s in (str(header(g)).strip("\n"), body, str(footer(g)).strip("\n")) if s)

        return self._fit(views, assemble, lambda s: utf16_len(s) <= limit, _max_parts(message, self.max_parts))

    def _fit(self, views: list[AlertView], assemble: Any, fits: Any, max_parts: int) -> list[Any]:
        for detail in (True, False):
            whole = assemble(views, detail, 1, 1, 0)
            if fits(whole):
                return [whole]
        # split between alerts: greedy, sizing each part with a worst-case part counter in its header
        chunks: list[list[AlertView]] = []
        current: list[AlertView] = []
        probe_parts = max_parts
        for v in views:
            trial = [*current, v]
            if current and not fits(assemble(trial, False, probe_parts, probe_parts, 0)):
                chunks.append(current)
                current = [v]
            else:
                current = trial
        if current:
            chunks.append(current)
        more = 0
        if len(chunks) > max_parts:
            kept = chunks[:max_parts]
            more = sum(len(c) for c in chunks[max_parts:])
            last = kept[-1]
            while last and not fits(assemble(last, False, max_parts, max_parts, more)):
                more += 1
                last = last[:-1]
            kept[-1] = last
            chunks = kept
        n = len(chunks)
        return [assemble(c, False, i + 1, n, more if i == n - 1 else 0) for i, c in enumerate(chunks)]

    # -- Slack ----------------------------------------------------------------------------------------------------
    def slack_parts(self, message: Message, now: float) -> list[SlackPart]:
        header = self._macro(self.slack, self._slack_default, "header")
        summary = self._macro(self.slack, self._slack_default, "summary")
        alert = self._macro(self.slack, self._slack_default, "alert")
        footer = self._macro(self.slack, self._slack_default, "footer")
        views = self._views(message, now)

        def assemble(chunk: list[AlertView], detail: bool, part: int, parts: int, more: int) -> SlackPart:
            g = group_context(message, now, chunk, detail=detail, part=part, parts=parts, more=more)
            title = html.unescape(str(header(g)).strip())  # header blocks are plain_text: no mrkdwn escapes
            blocks: list[dict[str, Any]] = [
                {
                    "type": "header",
                    "text": {"type": "plain_text", "text": _clip(title, SLACK_MAX_HEADER), "emoji": True},
                }
            ]
            s = str(summary(g)).strip()
            if s:
                blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": s}]})
            texts = [str(alert(a, detail)).strip() for a in chunk]
            if detail:
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
            f = str(footer(g)).strip()
            if f:
                blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(f, 3000)}]})
            return SlackPart(text=title, color=g["color"], blocks=blocks)

        def fits(p: SlackPart) -> bool:
            total = sum(len(str(b)) for b in p.blocks)
            return len(p.blocks) <= SLACK_MAX_BLOCKS and total <= SLACK_MAX_TOTAL

        parts: list[SlackPart] = self._fit(views, assemble, fits, _max_parts(message, self.max_parts))
        return parts

    # -- email and log --------------------------------------------------------------------------------------------
    def email(self, message: Message, now: float) -> EmailContent:
        views = self._views(message, now)
        for detail in (True, False):
            ctx = group_context(message, now, views, detail=detail)
            body_html = self.email_html.render(ctx)
            if len(body_html.encode()) <= EMAIL_MAX_HTML:
                break
        subject = " ".join(self.subject.render(ctx).split())
        return EmailContent(subject=subject, text=self.text.render(ctx), html=body_html)

    def digest_email(self, digest: dict[str, Any]) -> EmailContent:
        subject = " ".join(self._digest_subject.render(digest).split())
        return EmailContent(
            subject=subject, text=self._digest_text.render(digest), html=self._digest_html.render(digest)
        )

    def log_text(self, message: Message, now: float) -> str:
        return self.log.render(group_context(message, now, self._views(message, now))).strip()


def _max_parts(message: Message, default: int) -> int:
    return STORM_MAX_PARTS if message.group.group_key.startswith("storm:") else default


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, SLACK_MAX_SECTION)}}
