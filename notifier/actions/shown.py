"""What a message shows of the chat actions: who acknowledged or silenced its group (with a link to the silence),
and on a target that can act, the buttons of a firing group. The actions behind the buttons are stored before the
message is sent: a button can be pressed the moment it arrives. The worker calls it for every alert and edit
message when chat actions are on; it knows nothing else of them."""

from __future__ import annotations

import dataclasses

import msgspec

from notifier.actions.buttons import buttons_for
from notifier.channels.registry import PLUGINS
from notifier.domain import ActionButton, Delivery, GroupActions, Message
from notifier.settings import Settings
from notifier.silences import silence_link
from notifier.store import Store
from notifier.store.actions import keep_actions, read_group_actions


class ShownActions:
    def __init__(self, settings: Settings, store: Store) -> None:
        assert settings.actions is not None
        self._actions = settings.actions
        self._alertmanager = settings.alertmanager
        self._store = store
        # targets that show chat-action buttons and can edit what they sent
        self._acting = {key for r in settings.receivers for key, ch, t in r.targets() if PLUGINS[ch].buttons(t)}

    async def __call__(self, d: Delivery, group: str, message: Message, now: float) -> Message:
        async with self._store.begin(readonly=True) as conn:
            state = (await read_group_actions(conn, [group], now)).get(group, GroupActions())
        if state.silence_id and self._alertmanager is not None:
            state = msgspec.structs.replace(state, silence_url=silence_link(self._alertmanager, state.silence_id))
        buttons: tuple[ActionButton, ...] = ()
        if d.target in self._acting and message.group.firing:
            durations = [float(x) for x in self._actions.silence_durations]
            buttons, stored = buttons_for(group, state, durations, now)
            await self._store.run_in_transaction(lambda conn: keep_actions(conn, stored, now))
        return dataclasses.replace(message, actions=state, buttons=buttons, action_zone=self._actions.timezone)
