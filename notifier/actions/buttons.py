"""The buttons a message offers, and the stored actions behind them (pure).

A button carries only the id of a stored action (Telegram allows 64 bytes of callback data). The id is derived from
what the action does (group, action, duration or silence), so every message of a group offers the same ids and a
button pressed on an older message acts on the group as it is now.
"""

from __future__ import annotations

import hashlib

from notifier.domain import ActionButton, ChatAction, GroupActions
from notifier.store.actions import StoredAction

ID_PREFIX = "na1-"  # notifier action, version 1: other bots' callback data is left alone


def action_id(group_hash: str, action: ChatAction, duration: float | None = None, silence_id: str | None = None) -> str:
    digest = hashlib.sha256(f"{group_hash}\x00{action.value}\x00{duration}\x00{silence_id}".encode()).hexdigest()
    return ID_PREFIX + digest[:20]


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
        a = StoredAction(
            id=action_id(group_hash, action, duration), group_hash=group_hash, action=action, duration=duration
        )
        stored.append(a)
        return ActionButton(label, a.id)

    out = [button("Unack", ChatAction.UNACK) if state.acked_by else button("Ack", ChatAction.ACK)]
    if state.silenced_until is not None and state.silenced_until > now:
        out.append(button("Unsilence", ChatAction.UNSILENCE))
    else:
        out += [button(f"Silence {short_duration(d)}", ChatAction.SILENCE, d) for d in durations]
    return tuple(out), stored


def expire_button(group_hash: str, silence_id: str) -> tuple[ActionButton, StoredAction]:
    """Unsilence for a silence /silences lists, by its id."""
    a = StoredAction(
        id=action_id(group_hash, ChatAction.EXPIRE, silence_id=silence_id),
        group_hash=group_hash,
        action=ChatAction.EXPIRE,
        silence_id=silence_id,
    )
    return ActionButton("Unsilence", a.id), a
