"""Rendering: the sandboxed Jinja2 environments (one per markup), the default templates, and length-aware assembly.

Templates are data. Each channel's environment escapes every `{{ }}` for its markup (Telegram and email HTML by
autoescape; Slack mrkdwn by a finalize hook), so a label such as `<script>&"x"` can never break a message; the values
themselves are cleaned and bounded before any template sees them (`context`, `safety`).

Assembly is linear in the group's size: a message spells out at most `max_alerts` alerts (the most important ones;
the rest are "+N more" with a link to Alertmanager), each alert is rendered once per form (with and without detail),
and parts are packed from those rendered lengths. When a message is too long for the provider, detail is dropped
first, then the group is split between alerts into numbered parts, and past `max_parts` the last part says "+N more".
A split never falls inside a tag: each part is assembled from whole alerts.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Generic, TypeVar

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from notifier.domain import Message
from notifier.settings import (
    DEFAULT_HIDDEN_LABELS,
    DEFAULT_MAX_ALERTS,
    DEFAULT_MAX_PARTS,
    ReceiverSettings,
    TemplateOverride,
    TemplatesSettings,
)
from notifier.templates.context import AlertView, group_context, group_url
from notifier.templates.safety import clip, escape_mrkdwn, header_line, one_line

__all__ = [
    "SLACK_MAX_SECTION",
    "TELEGRAM_MAX_TEXT",
    "EmailContent",
    "Renderer",
    "SlackPart",
    "escape_mrkdwn",
    "html_to_plain",
    "telegram_len",
    "utf16_len",
]

# Telegram Bot API: sendMessage text is 1-4096 characters after entity parsing (core.telegram.org/bots/api#sendmessage),
# counted in UTF-16 code units (`telegram_len`).
TELEGRAM_MAX_TEXT = 4096
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
# Gmail clips HTML bodies over about 102 KB.
EMAIL_MAX_HTML = 100_000
STORM_MAX_PARTS = 2  # a storm summary must not spend the provider's limit on itself: the rest is "+N more"

_TAG = re.compile(r"<[^>]+>")
P = TypeVar("P")


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


def telegram_len(html_text: str) -> int:
    """The length Telegram limits: UTF-16 code units of the text once its HTML is parsed."""
    return utf16_len(html_to_plain(html_text))


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


@dataclass(frozen=True, slots=True)
class EmailContent:
    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class _Markup(Generic[P]):
    """How one markup assembles a message: `head`/`foot` render the group's header and footer for a part's
    context, `alert` one alert, `join` builds a part from them, `size` measures what `budget` bounds."""

    head: Callable[[dict[str, Any]], str]
    alert: Callable[[AlertView, bool], str]
    foot: Callable[[dict[str, Any]], str]
    join: Callable[[dict[str, Any], str, list[str], str], P]
    size: Callable[[str], int]
    fits: Callable[[P], bool]
    budget: int


class Renderer:
    """Compiled templates of one receiver (defaults where it overrides nothing) and the length-aware assembly."""

    def __init__(
        self,
        overrides: TemplatesSettings | None = None,
        *,
        max_parts: int = DEFAULT_MAX_PARTS,
        max_alerts: int = DEFAULT_MAX_ALERTS,
        hide_labels: Iterable[str] = DEFAULT_HIDDEN_LABELS,
    ) -> None:
        self._html = _env("html")
        self._mrkdwn = _env("mrkdwn")
        self._text = _env("text")
        o = overrides or TemplatesSettings()
        self.max_parts = max_parts
        self.max_alerts = max_alerts
        self.hidden = frozenset(hide_labels)
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

    @classmethod
    def for_receiver(cls, receiver: ReceiverSettings) -> Renderer:
        m = receiver.message
        return cls(receiver.templates, max_parts=m.max_parts, max_alerts=m.max_alerts, hide_labels=m.hide_labels)

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

    def context(self, message: Message, now: float) -> dict[str, Any]:
        return group_context(message, now, max_alerts=self.max_alerts, hidden=self.hidden)

    def _parts(self, message: Message, now: float, m: _Markup[P]) -> list[P]:
        """The message as few parts as it fits in, each within the provider's limit (see the module's docstring)."""
        base = self.context(message, now)
        views: list[AlertView] = base["alerts"]
        unlisted: int = base["unlisted"]
        max_parts = _max_parts(message, self.max_parts)
        texts: list[str] = []
        for detail in (True, False):
            texts = [m.alert(v, detail) for v in views]
            g = {**base, "detail": detail}
            whole = m.join(g, m.head(g), texts, m.foot(g))
            if m.fits(whole):
                return [whole]
        # Split between alerts, packing the short forms by their measured sizes into the room that the worst-case
        # header and footer (the highest part counter, the largest "+N more") leave.
        worst = {**base, "detail": False, "part": max_parts, "parts": max_parts, "more": base["n_alerts"]}
        room = m.budget - m.size(m.head(worst)) - m.size(m.foot(worst)) - 2
        chunks: list[list[int]] = [[]]
        used = 0
        for i, t in enumerate(texts):
            need = m.size(t) + 1
            if chunks[-1] and used + need > room:
                chunks.append([])
                used = 0
            chunks[-1].append(i)
            used += need
        # The sizes are measured per alert, but a part is more than the sum of its alerts (markup, blocks, clipped
        # sections): a part that still does not fit is split in two, until every part fits or holds one alert.
        while True:
            overflow = sum(len(c) for c in chunks[max_parts:])
            kept = chunks[:max_parts]
            n = len(kept)
            parts: list[P] = []
            for k, chunk in enumerate(kept):
                more = unlisted + overflow if k == n - 1 else 0
                g = {**base, "alerts": [views[i] for i in chunk], "detail": False, "part": k + 1, "parts": n}
                g["more"] = more
                parts.append(m.join(g, m.head(g), [texts[i] for i in chunk], m.foot(g)))
            too_big = [k for k, p in enumerate(parts) if not m.fits(p) and len(kept[k]) > 1]
            if not too_big:
                return parts
            for k in reversed(too_big):
                half = len(chunks[k]) // 2
                chunks[k : k + 1] = [chunks[k][:half], chunks[k][half:]]

    # -- Telegram -------------------------------------------------------------------------------------------------
    def telegram_parts(self, message: Message, now: float, limit: int = TELEGRAM_MAX_TEXT) -> list[str]:
        header = self._macro(self.telegram, self._tg_default, "header")
        alert = self._macro(self.telegram, self._tg_default, "alert")
        footer = self._macro(self.telegram, self._tg_default, "footer")

        def join(_g: dict[str, Any], head: str, texts: list[str], foot: str) -> str:
            return "\n".join(s for s in (head, "\n".join(texts), foot) if s)

        markup: _Markup[str] = _Markup(
            head=lambda g: str(header(g)).strip("\n"),
            alert=lambda a, detail: str(alert(a, detail)).strip("\n"),
            foot=lambda g: str(footer(g)).strip("\n"),
            join=join,
            size=telegram_len,
            fits=lambda text: telegram_len(text) <= limit,
            budget=limit,
        )
        return self._parts(message, now, markup)

    # -- Slack ----------------------------------------------------------------------------------------------------
    def slack_parts(self, message: Message, now: float) -> list[SlackPart]:
        header = self._macro(self.slack, self._slack_default, "header")
        summary = self._macro(self.slack, self._slack_default, "summary")
        alert = self._macro(self.slack, self._slack_default, "alert")
        footer = self._macro(self.slack, self._slack_default, "footer")

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

        markup: _Markup[SlackPart] = _Markup(
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
        return self._parts(message, now, markup)

    # -- email and log --------------------------------------------------------------------------------------------
    def email(self, message: Message, now: float) -> EmailContent:
        base = self.context(message, now)
        ctx = base
        for detail in (True, False):
            ctx = {**base, "detail": detail}
            body_html = self.email_html.render(ctx)
            if len(body_html.encode()) <= EMAIL_MAX_HTML:
                break
        return EmailContent(subject=header_line(self.subject.render(ctx)), text=self.text.render(ctx), html=body_html)

    def digest_email(self, digest: dict[str, Any]) -> EmailContent:
        return EmailContent(
            subject=header_line(self._digest_subject.render(digest)),
            text=self._digest_text.render(digest),
            html=self._digest_html.render(digest),
        )

    def log_text(self, message: Message, now: float) -> str:
        return self.log.render(self.context(message, now)).strip()

    # -- the minimal safe form ------------------------------------------------------------------------------------
    def minimal_text(self, message: Message, now: float) -> str:
        """What is sent when a provider refused the rendered message for its content: plain text, no markup, no
        template of the receiver's, far within every provider's limit. Severity, alert name, counts, the link."""
        g = message.group
        firing = g.firing
        state = g.severity.value.upper() if firing else "RESOLVED"
        name = g.labels_for_routing().get("alertname", "") or (g.alerts[0].name if g.alerts else "")
        name = clip(one_line(name), 100)
        counts = f"{len(firing)} firing, {len(g.alerts) - len(firing)} resolved"
        link = group_url(g.external_url, dict(g.group_labels))
        lines = [f"{'[TEST] ' if message.kind.value == 'test' else ''}{state}: {name or 'Alert'} ({counts})"]
        if link:
            lines.append(link)
        return "\n".join(lines)


def _max_parts(message: Message, default: int) -> int:
    return STORM_MAX_PARTS if message.group.group_key.startswith("storm:") else default


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SLACK_MAX_SECTION)}}
