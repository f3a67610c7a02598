"""Rendering, shared by every channel: the sandboxed Jinja2 environments (one per markup), templates (a receiver's
own where it has one, else the default), what templates see, and the length-aware assembly of a message.

Templates are data. Each markup's environment escapes every `{{ }}` (HTML by autoescape; Slack mrkdwn by a finalize
hook), so a label such as `<script>&"x"` can never break a message; the values themselves are cleaned and bounded
before any template sees them (`context`, `safety`). A channel (`notifier/channels/`) declares its templates and
calls `assemble` with how its markup joins and measures a message.

Assembly is linear in the group's size: a message spells out at most `max_alerts` alerts (the most important ones;
the rest are "+N more" with a link to Alertmanager), each alert is rendered once per form (with and without detail),
and parts are packed from those rendered lengths. When a message is too long for the provider, detail is dropped
first, then the group is split between alerts into numbered parts, and past `max_parts` the last part says "+N more".
A split never falls inside a tag: each part is assembled from whole alerts.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Generic, Literal, TypeVar

from jinja2 import StrictUndefined, TemplateError
from jinja2 import Template as JinjaTemplate
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from notifier.configtypes import DEFAULT_HIDDEN_LABELS, DEFAULT_MAX_ALERTS, DEFAULT_MAX_PARTS
from notifier.domain import Message
from notifier.templates.context import AlertView, group_context, group_url
from notifier.templates.safety import clip, escape_mrkdwn, one_line

__all__ = ["Assembly", "Renderer", "Template", "escape_mrkdwn"]

STORM_MAX_PARTS = 2  # a storm summary must not spend the provider's limit on itself: the rest is "+N more"
MarkupKind = Literal["html", "mrkdwn", "text"]
P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Template:
    """One template a channel uses: its key under a receiver's `templates:`, its markup, its default's file."""

    key: str
    markup: MarkupKind
    default: str
    overridable: bool = True


def _slack_finalize(value: Any) -> Any:
    if isinstance(value, Markup):
        return str(value)
    if value is None:
        return ""
    return escape_mrkdwn(str(value))


def _slack_link(url: str, text: str) -> Markup:
    return Markup(f"<{escape_mrkdwn(str(url)).replace('|', '%7C')}|{escape_mrkdwn(str(text))}>")  # noqa: S704 -- parts escaped above


def _env(kind: MarkupKind) -> SandboxedEnvironment:
    common: dict[str, Any] = {"undefined": StrictUndefined, "keep_trailing_newline": False, "trim_blocks": False}
    if kind == "html":
        return SandboxedEnvironment(autoescape=True, **common)
    if kind == "mrkdwn":
        env = SandboxedEnvironment(autoescape=False, finalize=_slack_finalize, **common)
        env.globals["link"] = _slack_link
        return env
    return SandboxedEnvironment(autoescape=False, **common)


# One environment per markup for the process, and each distinct template compiled once in it: receivers share
# what they have in common (the defaults, above all). Compiling takes tens of milliseconds and holds the GIL, so
# once per receiver it would hold back the first message of each receiver after a start, and the event loop with
# it. The keys are the defaults and the configuration's templates, so the cache stays as small as they are.
_ENVS: dict[MarkupKind, SandboxedEnvironment] = {kind: _env(kind) for kind in ("html", "mrkdwn", "text")}
_COMPILED: dict[tuple[MarkupKind, str], JinjaTemplate] = {}
_COMPILING = threading.Lock()  # renderers run in worker threads too


def _compile(markup: MarkupKind, source: str) -> JinjaTemplate:
    compiled = _COMPILED.get((markup, source))
    if compiled is None:
        with _COMPILING:
            compiled = _COMPILED.get((markup, source))
            if compiled is None:
                compiled = _COMPILED[(markup, source)] = _ENVS[markup].from_string(source)
    return compiled


@functools.cache  # the package's files: read once, not for every receiver and every page that renders
def _default_source(name: str) -> str:
    return (files("notifier.templates") / name).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Assembly(Generic[P]):
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
    """One receiver's templates (its own where it overrides one, else the defaults) and the assembly."""

    def __init__(
        self,
        overrides: Mapping[str, str] | None = None,
        templates: Iterable[Template] = (),
        *,
        max_parts: int = DEFAULT_MAX_PARTS,
        max_alerts: int = DEFAULT_MAX_ALERTS,
        hide_labels: Iterable[str] = DEFAULT_HIDDEN_LABELS,
    ) -> None:
        """`overrides`: template key -> source; `templates`: the templates to compile now (the receiver's own and
        the defaults), so that a receiver's template that does not compile is refused at start and the first
        message waits for no compiling (any other compiles on first use)."""
        self._overrides = dict(overrides or {})
        self._compiled: dict[tuple[str, bool], JinjaTemplate] = {}
        self.max_parts = max_parts
        self.max_alerts = max_alerts
        self.hidden = frozenset(hide_labels)
        for t in templates:
            self.template(t)
            self.template(t, default=True)  # where a macro of the receiver's own is missing (see macro)

    def template(self, t: Template, *, default: bool = False) -> JinjaTemplate:
        """The compiled template: the receiver's own for `t.key`, unless `default` or it has none."""
        own = t.overridable and not default and t.key in self._overrides
        cached = self._compiled.get((t.key, own))
        if cached is not None:
            return cached
        source = self._overrides[t.key] if own else _default_source(t.default)
        try:
            compiled = _compile(t.markup, source)
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            where = f" (line {line})" if line else ""
            raise ValueError(f"templates.{t.key}: template does not compile{where}: {exc}") from None
        self._compiled[(t.key, own)] = compiled
        return compiled

    def macro(self, t: Template, name: str) -> Any:
        """A macro of the template, from the receiver's own where it defines it, else from the default."""
        return getattr(self.template(t).module, name, None) or getattr(self.template(t, default=True).module, name)

    def context(self, message: Message, now: float) -> dict[str, Any]:
        return group_context(message, now, max_alerts=self.max_alerts, hidden=self.hidden)

    def assemble(self, message: Message, now: float, m: Assembly[P]) -> list[P]:
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
