"""The buttons a message offers, and the stored actions behind them (pure).

A button carries only the id of a stored action (Telegram allows 64 bytes of callback data). Each id is 128 random
bits from the operating system's generator, new for every button shown: it cannot be computed from anything a
person sees (a group's labels, another button), so holding one is what lets a press through, and then only if the
person may act on the action's group. An id lives `actions.button_lifetime` from when its message was sent and is
never renewed; a button pressed on an older message acts on its group as it is now.
"""

from __future__ import annotations

import re
import secrets

from notifier.domain import ActionButton, ChatAction, GroupActions
from notifier.store.actions import StoredAction

ID_PREFIX = "na2-"  # notifier action, version 2: other bots' callback data is left alone
_ID = re.compile(r"na2-[A-Za-z0-9_-]{22}")


def new_action_id() -> str:
    return ID_PREFIX + secrets.token_urlsafe(16)


def is_action_id(text: str) -> bool:
    """Whether `text` can be one of our action ids (anything else is not looked up)."""
    return _ID.fullmatch(text) is not None


def short_duration(seconds: float) -> str:
    """1h, 4h, 24h, 30m, 2d: the label of a silence button."""
    s = int(seconds)
    if s % 86400 == 0 and s >= 2 * 86400:
        return f"{s // 86400}d"
    if s % 3600 == 0:
        return f"{s // 3600}h"
    return f"{s // 60}m"


def buttons_for(
    group_hash: str, state: GroupActions, durations: list[float], now: float
) -> tuple[tuple[ActionButton, ...], list[StoredAction]]:
    """Ack or Unack; a Silence per duration, or Unsilence while the group's silence lasts."""
    stored: list[StoredAction] = []

    def button(label: str, action: ChatAction, duration: float | None = None) -> ActionButton:
        a = StoredAction(id=new_action_id(), group_hash=group_hash, action=action, duration=duration)
        stored.append(a)
        return ActionButton(label, a.id)

    out = [button("Unack", ChatAction.UNACK) if state.acked_by else button("Ack", ChatAction.ACK)]
    if state.silenced_until is not None and state.silenced_until > now:
        out.append(button("Unsilence", ChatAction.UNSILENCE))
    else:
        out += [button(f"Silence {short_duration(d)}", ChatAction.SILENCE, d) for d in durations]
    return tuple(out), stored


def expire_button(group_hash: str, silence_id: str) -> tuple[ActionButton, StoredAction]:
    """Unsilence for a silence /silences lists (one this notifier made for the group), by its id."""
    a = StoredAction(id=new_action_id(), group_hash=group_hash, action=ChatAction.EXPIRE, silence_id=silence_id)
    return ActionButton("Unsilence", a.id), a
