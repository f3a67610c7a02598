"""What a press or a command from the chat does.

A press names a stored action (the button's id). The service checks that the action is known and fresh and that
the person may act in that chat, then acknowledges the group (stored, across receivers), or silences it through
Alertmanager (recorded only once Alertmanager made it), or undoes either; then every copy of the group's current
message that can be edited gets an EDIT message in the outbox, so the edits are retried like any message. Every
press and command is recorded (who, what, when, outcome), logged and counted. The answer is what the person sees:
a short text, and for commands the buttons that go with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from sqlalchemy.engine import Connection

from notifier.actions.buttons import buttons_for, expire_button
from notifier.channels.registry import PLUGINS
from notifier.clock import Clock
from notifier.domain import ActionButton, ActionOutcome, ChatAction, EventKind, GroupActions, Severity, TimelineEvent
from notifier.errors import StoreUnavailable
from notifier.metrics import NotifierMetrics
from notifier.redaction import redact
from notifier.settings import ActionsSettings, AllowedActors, Settings
from notifier.silences import SilenceClient, SilenceError
from notifier.store import Store, new_id
from notifier.store import actions as sa
from notifier.store.timeline import record
from notifier.templates.context import clock_time, format_duration

log = logging.getLogger("notifier.actions")
PLACEHOLDER_HOLD = 60.0  # how long a press holds a group while its silence is being made
ALERTS_LISTED = 10
HELP = (
    "/alerts: the firing alert groups, most severe and oldest first, with their buttons\n"
    "/silences: the active silences in Alertmanager, each with Unsilence\n"
    "/status: the notifier's outbox, dead letters and last delivery per channel\n"
    "/help: this list"
)
COMMANDS = (
    ("alerts", "Firing alert groups"),
    ("silences", "Active silences"),
    ("status", "The notifier's health"),
    ("help", "What the commands do"),
)
_SEVERITY_MARK = {Severity.CRITICAL: "🔴", Severity.WARNING: "🟠", Severity.INFO: "🔵"}


class Actor(msgspec.Struct, frozen=True):
    """Who pressed or asked: their id and name on the channel (a Telegram username, a Slack user name)."""

    channel: str
    id: str
    name: str = ""

    def shown(self) -> str:
        if self.channel == "telegram" and self.name:
            return f"@{self.name}"
        return self.name or self.id


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    outcome: ActionOutcome
    buttons: tuple[ActionButton, ...] = ()
    rows: tuple[tuple[str, tuple[ActionButton, ...]], ...] = ()  # /alerts, /silences: a line and its buttons each


class ActionService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        silences: SilenceClient,
        clock: Clock,
        metrics: NotifierMetrics,
        wake_worker: Callable[[], None],
    ) -> None:
        assert settings.actions is not None
        self._settings = settings
        self._actions: ActionsSettings = settings.actions
        self._store = store
        self._silences = silences
        self._clock = clock
        self._metrics = metrics
        self._wake = wake_worker
        self._editable = [key for r in settings.receivers for key, ch, t in r.targets() if PLUGINS[ch].acts(t)]
        # chat (Telegram chat id, Slack channel) -> who may act there, where a receiver with a target there says so
        self._allowed_in: dict[tuple[str, str], list[AllowedActors]] = {}
        for r in settings.receivers:
            if r.actions is None:
                continue
            for _key, ch, t in r.targets():
                chat = getattr(t, "chat_id", None) if ch == "telegram" else getattr(t, "channel", None)
                if chat is not None:
                    self._allowed_in.setdefault((ch, str(chat)), []).append(r.actions.allowed)

    def may_act(self, actor: Actor, chat: str | None) -> bool:
        lists = self._allowed_in.get((actor.channel, str(chat)), [self._actions.allowed])
        for allowed in lists:
            if actor.channel == "slack" and actor.id in allowed.slack:
                return True
            if actor.channel == "telegram":
                for who in allowed.telegram:
                    if isinstance(who, int) and str(who) == actor.id:
                        return True
                    if isinstance(who, str) and actor.name and who.lstrip("@").lower() == actor.name.lower():
                        return True
        return False

    # -- presses ------------------------------------------------------------------------------------------------------

    async def press(self, actor: Actor, action_id: str, chat: str | None) -> Answer:
        now = self._clock.now()
        stored = await self._store.run_in_transaction(lambda conn: sa.get_action(conn, action_id))
        if stored is None or now - stored.created_at > self._actions.button_lifetime:
            return await self._done(actor, "press", None, Answer("This button has expired.", ActionOutcome.EXPIRED))
        if not self.may_act(actor, chat):
            answer = Answer("You may not act on alerts here.", ActionOutcome.REFUSED)
            return await self._done(actor, stored.action.value, stored.group_hash, answer)
        group = await self._store.run_in_transaction(lambda conn: sa.get_group(conn, stored.group_hash))
        if group is None and stored.action is not ChatAction.EXPIRE:
            return await self._done(
                actor, stored.action.value, stored.group_hash, Answer("This button has expired.", ActionOutcome.EXPIRED)
            )
        gh = stored.group_hash
        if stored.action is ChatAction.ACK:
            answer = await self._ack(actor, gh, now)
        elif stored.action is ChatAction.UNACK:
            answer = await self._unack(gh)
        elif stored.action is ChatAction.SILENCE:
            assert group is not None and stored.duration is not None
            answer = await self._silence(actor, group, stored.duration, now)
        elif stored.action is ChatAction.UNSILENCE:
            answer = await self._unsilence(gh, now)
        else:
            assert stored.silence_id is not None
            sid = stored.silence_id
            found: str | None = await self._store.run_in_transaction(lambda conn: sa.silence_group(conn, sid))
            gh = found or gh
            answer = await self._expire(sid, gh)
        if answer.outcome is ActionOutcome.DONE:
            await self._queue_edits(gh, now)
        return await self._done(actor, stored.action.value, gh, answer, group.group_key if group else "")

    async def _ack(self, actor: Actor, gh: str, now: float) -> Answer:
        fresh = await self._store.run_in_transaction(
            lambda conn: sa.set_ack(conn, gh, actor.shown(), actor.channel, now)
        )
        if fresh:
            return Answer(f"Acknowledged by {actor.shown()}.", ActionOutcome.DONE)
        return Answer("Acknowledged already.", ActionOutcome.UNCHANGED)

    async def _unack(self, gh: str) -> Answer:
        await self._store.run_in_transaction(lambda conn: sa.clear_acks(conn, [gh]))
        return Answer("No longer acknowledged.", ActionOutcome.DONE)

    async def _silence(self, actor: Actor, group: sa.AlertGroupRecord, duration: float, now: float) -> Answer:
        gh = group.group_hash
        ours, sid, until, by = await self._store.run_in_transaction(
            lambda conn: sa.claim_silence(conn, gh, actor.shown(), now, PLACEHOLDER_HOLD)
        )
        zone = self._actions.timezone
        if not ours:
            if sid:
                return Answer(f"Silenced already, until {clock_time(until, zone)} by {by}.", ActionOutcome.UNCHANGED)
            return Answer(f"{by} is silencing this group right now.", ActionOutcome.UNCHANGED)
        end = now + duration
        channel = actor.channel.capitalize()
        labels = " ".join(f'{k}="{v}"' for k, v in sorted(group.labels.items()))
        try:
            sid = await self._silences.create(
                group.labels,
                now,
                end,
                f"{actor.shown()} via {channel}",
                f"Silenced from the notifier's {channel} message about {labels}",
            )
        except SilenceError as exc:
            await self._store.run_in_transaction(lambda conn: sa.clear_silence(conn, gh, silence_id=""))
            return Answer(f"Could not create the silence: {redact(str(exc))}", ActionOutcome.FAILED)
        await self._store.run_in_transaction(lambda conn: sa.set_silence(conn, gh, sid, actor.shown(), end, now))
        return Answer(f"Silenced until {clock_time(end, zone)}.", ActionOutcome.DONE)

    async def _unsilence(self, gh: str, now: float) -> Answer:
        current = await self._store.run_in_transaction(lambda conn: sa.group_silence(conn, gh, now))
        if current is None:
            return Answer("This group is not silenced from the chat.", ActionOutcome.UNCHANGED)
        return await self._expire(current[0], gh)

    async def _expire(self, silence_id: str, gh: str) -> Answer:
        try:
            await self._silences.expire(silence_id)
        except SilenceError as exc:
            return Answer(f"Could not expire the silence: {redact(str(exc))}", ActionOutcome.FAILED)
        await self._store.run_in_transaction(lambda conn: sa.clear_silence(conn, silence_id=silence_id))
        return Answer("Silence expired.", ActionOutcome.DONE)

    async def _queue_edits(self, gh: str, now: float) -> None:
        queued = await self._store.run_in_transaction(lambda conn: sa.queue_edits(conn, gh, self._editable, now))
        if queued:
            self._wake()

    async def _done(self, actor: Actor, action: str, gh: str | None, answer: Answer, group_key: str = "") -> Answer:
        """Record, log and count what happened; the record is best effort (the action itself is done). An action
        on a known group is a line of its timeline too."""
        now = self._clock.now()
        line = (
            [
                TimelineEvent(
                    id=new_id(),
                    at=now,
                    group_hash=gh,
                    group_key=group_key,
                    kind=EventKind.ACTION,
                    subject=actor.shown(),
                    outcome=answer.outcome.value,
                    text=f"{action} by {actor.shown()} via {actor.channel.capitalize()}: {answer.text}",
                )
            ]
            if gh and group_key and self._settings.storage.timeline
            else []
        )

        def write(conn: Connection) -> None:
            sa.log_action(
                conn,
                now=now,
                channel=actor.channel,
                actor=actor.shown(),
                action=action,
                group_hash=gh,
                outcome=answer.outcome.value,
                detail=f"{answer.text} ({actor.channel} user id {actor.id})",
            )
            record(conn, line)

        try:
            await self._store.run_in_transaction(write)
        except StoreUnavailable as exc:
            log.warning("chat action not recorded: %s", exc)
        log.info(
            "chat action %s by %s (%s %s) on %s: %s: %s",
            action,
            actor.shown(),
            actor.channel,
            actor.id,
            gh or "-",
            answer.outcome.value,
            answer.text,
        )
        self._metrics.chat_actions.labels(actor.channel, action, answer.outcome.value).inc()
        return answer

    # -- commands -----------------------------------------------------------------------------------------------------

    async def command(self, actor: Actor, text: str, chat: str | None, bot_name: str = "") -> Answer | None:
        """The answer to `/alerts`, `/silences`, `/status` or `/help` (also `/alerts@BotName`); None for text that
        is no command of ours (another bot's, or a message)."""
        word = text.strip().split(maxsplit=1)[0] if text.strip() else ""
        if not word.startswith("/"):
            return None
        name, _, addressed = word[1:].partition("@")
        if addressed and bot_name and addressed.lower() != bot_name.lower():
            return None
        name = name.lower()
        if name not in {c for c, _ in COMMANDS}:
            return None
        if name == "help":
            return await self._done(actor, "help", None, Answer(HELP, ActionOutcome.DONE))
        if not self.may_act(actor, chat):
            return await self._done(
                actor, name, None, Answer("You may not ask the notifier here.", ActionOutcome.REFUSED)
            )
        if name == "alerts":
            answer = await self._alerts()
        elif name == "silences":
            answer = await self._active_silences()
        else:
            answer = await self._status()
        return await self._done(actor, name, None, answer)

    async def _alerts(self) -> Answer:
        now = self._clock.now()
        async with self._store.begin(readonly=True) as conn:
            groups = await sa.firing_groups(conn, ALERTS_LISTED + 1)
            states = await sa.read_group_actions(conn, [g.group_hash for g in groups], now)
        if not groups:
            return Answer("No alert group is firing.", ActionOutcome.DONE)
        durations = [float(d) for d in self._actions.silence_durations]
        rows: list[tuple[str, tuple[ActionButton, ...]]] = []
        shown: list[sa.StoredAction] = []
        for g in groups[:ALERTS_LISTED]:
            state = states.get(g.group_hash, GroupActions())
            buttons, stored = buttons_for(g.group_hash, state, durations, now)
            shown += stored
            rows.append((self._group_line(g, state, now), buttons))
        await self._store.run_in_transaction(lambda conn: sa.keep_actions(conn, shown, now))
        head = f"{len(groups) if len(groups) <= ALERTS_LISTED else f'{ALERTS_LISTED}+'} firing alert groups"
        return Answer(head, ActionOutcome.DONE, rows=tuple(rows))

    def _group_line(self, g: sa.AlertGroupRecord, state: GroupActions, now: float) -> str:
        zone = self._actions.timezone
        labels = ", ".join(f"{k}={v}" for k, v in sorted(g.labels.items()) if k not in ("alertname", "severity"))
        name = g.labels.get("alertname", "") or "alerts"
        age = format_duration(now - (g.firing_since or g.updated_at))
        line = f"{_SEVERITY_MARK[g.severity]} {g.severity.value}: {name}"
        line += f" {{{labels}}}" if labels else ""
        line += f", {g.firing} firing for {age}"
        if state.acked_by and state.acked_at is not None:
            line += f" · ✅ {state.acked_by} at {clock_time(state.acked_at, zone)}"
        if state.silenced_until is not None:
            line += f" · 🔕 until {clock_time(state.silenced_until, zone)}"
        return line

    async def _active_silences(self) -> Answer:
        try:
            silences = await self._silences.active()
        except SilenceError as exc:
            return Answer(f"Could not list the silences: {redact(str(exc))}", ActionOutcome.FAILED)
        if not silences:
            return Answer("No active silence.", ActionOutcome.DONE)
        zone = self._actions.timezone
        rows: list[tuple[str, tuple[ActionButton, ...]]] = []
        shown: list[sa.StoredAction] = []
        for s in silences[:ALERTS_LISTED]:
            button, stored = expire_button("", s.id)
            shown.append(stored)
            matchers = ", ".join(f"{m.name}{'=~' if m.isRegex else '='}{m.value}" for m in s.matchers)
            until = clock_time(s.endsAt.timestamp(), zone)
            rows.append((f"🔕 {{{matchers}}} until {until} by {s.createdBy}", (button,)))
        now = self._clock.now()
        await self._store.run_in_transaction(lambda conn: sa.keep_actions(conn, shown, now))
        return Answer(f"{len(silences)} active silences", ActionOutcome.DONE, rows=tuple(rows))

    async def _status(self) -> Answer:
        now = self._clock.now()
        async with self._store.begin(readonly=True) as conn:
            waiting, dead, last = await sa.outbox_status(conn)
        lines = [f"Outbox: {waiting} waiting, {dead} dead letters"]
        for channel in sorted(last):
            lines.append(f"{channel}: last delivery {format_duration(now - last[channel])} ago")
        if not last:
            lines.append("No delivery yet.")
        return Answer("\n".join(lines), ActionOutcome.DONE)
