"""The channels the notifier has: one line each. A new channel is a module in this folder (its target's settings,
templates, rendering and sender, and a PLUGIN record), its default template in `notifier/templates/`, and a line
here; settings, the runtime, the CLI, the metrics and the worker take it from this list."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from notifier.channels import ChannelPlugin, email, log, ntfy, pushover, slack, telegram
from notifier.templates import Renderer

if TYPE_CHECKING:
    from notifier.settings import ReceiverSettings

PLUGINS: dict[str, ChannelPlugin[Any]] = {
    p.name: p
    for p in (
        telegram.PLUGIN,
        slack.PLUGIN,
        email.PLUGIN,
        ntfy.PLUGIN,
        pushover.PLUGIN,
        log.PLUGIN,
    )
}


def renderer_for(receiver: ReceiverSettings) -> Renderer:
    """The receiver's renderer, with the templates of its channels and its own templates compiled now (one that
    does not compile is refused at start)."""
    m = receiver.message
    templates = [
        t for p in PLUGINS.values() for t in p.templates if t.key in receiver.templates or receiver.channels.get(p.name)
    ]
    return Renderer(
        receiver.template_sources(),
        templates,
        max_parts=m.max_parts,
        max_alerts=m.max_alerts,
        hide_labels=m.hide_labels,
    )
