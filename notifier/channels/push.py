"""What phone push services (ntfy, Pushover) show: a title line and a short body within the service's limit. A push
is one notification, never split: detail goes first, then the body is cut and says so; the full message is one tap
away (the click link to Alertmanager)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from notifier.domain import Message
from notifier.templates import Renderer, Template
from notifier.templates.safety import clip, one_line

CUT = "\n… (cut: open Alertmanager for the rest)"


@dataclass(frozen=True, slots=True)
class Push:
    title: str
    body: str
    link: str  # the group in Alertmanager, or ''
    silence_link: str  # a silence of the group prefilled in Alertmanager, or '' (resolved groups)


def render(
    renderer: Renderer,
    template: Template,
    message: Message,
    now: float,
    *,
    title_limit: int,
    body_limit: int,
    size: Callable[[str], int] = len,
) -> Push:
    """The push, its body at most `body_limit` as the service measures it (`size`: characters, or bytes)."""
    base = renderer.context(message, now)
    state = base["severity"].upper() if base["firing"] else "RESOLVED"
    test = "[TEST] " if base["is_test"] else ""
    title = clip(one_line(f"{test}{base['emoji']} {state}: {base['title']}"), title_limit)
    body = ""
    for detail in (True, False):
        body = renderer.template(template).render({**base, "detail": detail}).strip()
        if size(body) <= body_limit:
            break
    if size(body) > body_limit:
        room = body_limit - size(CUT)
        body = body[:room]
        while size(body) > room:
            body = body[: -max(1, (size(body) - room) // 4)]
        body = body.rstrip() + CUT
    return Push(title, body or state, base["group_url"] or base["alerts_url"], base["group_silence_url"])
