"""Who may act from the chat: decided by the group acted on, never by the chat the request came from. A person may
act on an alert group when a receiver the group routes to lists them (its own `actions.allowed`, else the top-level
one), by their permanent user id."""

from __future__ import annotations

from notifier.actions.commands import Actor, Answer
from notifier.domain import ActionOutcome
from notifier.settings import ActionsSettings, AllowedActors, Settings


class Permissions:
    def __init__(self, settings: Settings, actions: ActionsSettings) -> None:
        self._default = actions.allowed
        # receiver -> who may act on the groups that route to it: its own list, else the top-level one
        self._allowed: dict[str, AllowedActors] = {
            r.name: r.actions.allowed if r.actions is not None else actions.allowed for r in settings.receivers
        }

    @staticmethod
    def _listed(actor: Actor, allowed: AllowedActors) -> bool:
        if actor.channel == "slack":
            return actor.id in allowed.slack
        return actor.channel == "telegram" and actor.id.isdigit() and int(actor.id) in allowed.telegram

    def may_act_on(self, actor: Actor, receivers: list[str]) -> bool:
        """Whether the person may act on a group that routes to these receivers. A group whose receivers are not
        recorded (one seen before the notifier kept them) falls under the top-level `actions.allowed`."""
        lists = [self._allowed[r] for r in receivers if r in self._allowed] or [self._default]
        return any(self._listed(actor, allowed) for allowed in lists)

    def receivers_of(self, actor: Actor) -> list[str]:
        """The receivers whose groups the person may act on."""
        return [name for name, allowed in self._allowed.items() if self._listed(actor, allowed)]

    @staticmethod
    def refusal(actor: Actor, what: str) -> Answer:
        """Refused: said with the person's own id, so that whoever keeps the config can add them."""
        kind = {"telegram": "Telegram", "slack": "Slack"}.get(actor.channel, actor.channel)
        return Answer(f"{what} (your {kind} user id is {actor.id or '?'}).", ActionOutcome.REFUSED)
