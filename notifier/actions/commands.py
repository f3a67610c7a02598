"""The commands' answers (/alerts, /silences, /status, /why): read from the store, each showing only what the
asker may act on (`may_act_on`, the service's check, handed in). The service parses a command, checks the asker,
records it, and asks here for the answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from notifier.actions.buttons import buttons_for, expire_button
from notifier.clock import Clock
from notifier.domain import ActionButton, ActionOutcome, GroupActions, Severity
from notifier.redaction import redact
from notifier.settings import ActionsSettings
from notifier.silences import SilenceClient, SilenceError
from notifier.store import Store, escalations, watchdogs
from notifier.store import actions as sa
from notifier.store import timeline as stored_timeline
from notifier.store.escalations import ChainState
from notifier.store.watchdogs import SourceState
from notifier.templates.context import clock_time, format_duration

ALERTS_LISTED = 10
GROUPS_READ = 500  # firing groups read for /alerts, before those the asker may not act on are left out
HELP = (
    "/alerts: the firing alert groups you may act on, most severe and oldest first, with their buttons\n"
    "/silences: the silences made from the chat that are in force, each with Unsilence\n"
    "/status: the outbox, dead letters and last delivery per channel of your receivers, escalations under way, "
    "the Watchdog\n"
    "/why NAME: what the notifier last decided for the alert groups named NAME (an alert name or a label value) "
    "that you may act on, and why\n"
    "/help: this list"
)
COMMANDS = (
    ("alerts", "Firing alert groups"),
    ("silences", "Active silences"),
    ("status", "The notifier's health"),
    ("why", "Why was I (not) told"),
    ("help", "What the commands do"),
)
_SEVERITY_MARK = {Severity.CRITICAL: "🔴", Severity.WARNING: "🟠", Severity.INFO: "🔵"}
WHY_LOOK_BACK = 7 * 86400.0
WHY_GROUPS = 3
WHY_LINES = 12


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


class CommandAnswers:
    def __init__(
        self,
        actions: ActionsSettings,
        store: Store,
        silences: SilenceClient,
        clock: Clock,
        may_act_on: Callable[[Actor, list[str]], bool],
        *,
        timeline: bool = True,
        watchdog: bool = False,
    ) -> None:
        self._actions = actions
        self._store = store
        self._silences = silences
        self._clock = clock
        self._may_act_on = may_act_on
        self._timeline = timeline
        self._watchdog = watchdog

    async def alerts(self, actor: Actor) -> Answer:
        now = self._clock.now()
        async with self._store.begin(readonly=True) as conn:
            firing = await sa.firing_groups(conn, GROUPS_READ)
            groups = [g for g in firing if self._may_act_on(actor, g.receivers)]
            states = await sa.read_group_actions(conn, [g.group_hash for g in groups[:ALERTS_LISTED]], now)
        if not groups:
            return Answer("No alert group you may act on is firing.", ActionOutcome.DONE)
        durations = [float(d) for d in self._actions.silence_durations]
        rows: list[tuple[str, tuple[ActionButton, ...]]] = []
        shown: list[sa.StoredAction] = []
        for g in groups[:ALERTS_LISTED]:
            state = states.get(g.group_hash, GroupActions())
            buttons, stored = buttons_for(g.group_hash, state, durations, now)
            shown += stored
            rows.append((self._group_line(g, state, now), buttons))
        await self._store.run_in_transaction(lambda conn: sa.keep_actions(conn, shown, now))
        count = f"{len(groups)}" if len(groups) <= ALERTS_LISTED else f"{ALERTS_LISTED} of {len(groups)}"
        return Answer(f"Firing alert groups: {count}", ActionOutcome.DONE, rows=tuple(rows))

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

    async def own_silences(self, actor: Actor) -> Answer:
        """The silences this notifier made that are still in force, of groups the asker may act on."""
        now = self._clock.now()
        async with self._store.begin(readonly=True) as conn:
            own = await sa.own_active_silences(conn, now)
            groups = await sa.groups_by_hash(conn, {s.group_hash for s in own})
        mine = [s for s in own if self._may_act_on(actor, g.receivers if (g := groups.get(s.group_hash)) else [])]
        if not mine:
            return Answer("No silence made from the chat is in force on a group you may act on.", ActionOutcome.DONE)
        try:
            active = {s.id: s for s in await self._silences.active()}
        except SilenceError as exc:
            return Answer(f"Could not list the silences: {redact(str(exc))}", ActionOutcome.FAILED)
        zone = self._actions.timezone
        rows: list[tuple[str, tuple[ActionButton, ...]]] = []
        shown: list[sa.StoredAction] = []
        for own_silence in [s for s in mine if s.silence_id in active][:ALERTS_LISTED]:
            s = active[own_silence.silence_id]
            button, stored = expire_button(own_silence.group_hash, s.id)
            shown.append(stored)
            until = clock_time(s.endsAt.timestamp(), zone)
            rows.append((f"🔕 {{{', '.join(m.text() for m in s.matchers)}}} until {until} by {s.createdBy}", (button,)))
        if not rows:
            return Answer("No silence made from the chat is in force on a group you may act on.", ActionOutcome.DONE)
        await self._store.run_in_transaction(lambda conn: sa.keep_actions(conn, shown, now))
        return Answer(f"Silences made from the chat: {len(rows)}", ActionOutcome.DONE, rows=tuple(rows))

    async def status(self, actor: Actor, receivers: list[str]) -> Answer:
        now = self._clock.now()
        zone = self._actions.timezone
        async with self._store.begin(readonly=True) as conn:
            waiting, dead, last = await sa.outbox_status(conn, receivers)
            chains = await escalations.running(conn)
            groups = await sa.groups_by_hash(conn, {c.group_hash for c in chains})
            sources = await watchdogs.sources(conn) if self._watchdog else []
        lines = [f"Outbox of {', '.join(sorted(receivers))}: {waiting} waiting, {dead} dead letters"]
        for channel in sorted(last):
            lines.append(f"{channel}: last delivery {format_duration(now - last[channel])} ago")
        if not last:
            lines.append("No delivery yet.")
        mine = [c for c in chains if self._may_act_on(actor, g.receivers if (g := groups.get(c.group_hash)) else [])]
        for c in mine[:ALERTS_LISTED]:
            if c.state is ChainState.RUNNING and c.due_at is not None:
                step = c.steps[c.step]
                when = f"step {c.step + 1} ({', '.join(step.receivers)}) at {clock_time(c.due_at, zone)}"
            else:
                when = "waiting for its first message to be sent"
            lines.append(f"⏫ escalating {c.group_key}: {when}")
        for s in sources:
            if s.state is SourceState.MISSING:
                lines.append(f"🐕 Watchdog from {s.name}: MISSING since {clock_time(s.last_seen, zone)}")
            else:
                lines.append(f"🐕 Watchdog from {s.name}: last seen {format_duration(now - s.last_seen)} ago")
        return Answer("\n".join(lines), ActionOutcome.DONE)

    async def why(self, actor: Actor, name: str) -> Answer:
        """The last decisions of the groups named `name` (an alert name or a label value) the asker may act on,
        newest group first, as short lines from their timelines."""
        if not name:
            return Answer("Usage: /why NAME, with NAME an alert name or a label value.", ActionOutcome.DONE)
        if not self._timeline:
            return Answer("The timeline is off (storage.timeline: false): nothing to tell.", ActionOutcome.DONE)
        now = self._clock.now()
        zone = self._actions.timezone
        since = now - WHY_LOOK_BACK
        wanted = name.lower()
        async with self._store.begin(readonly=True) as conn:
            by_labels = await sa.firing_groups(conn, GROUPS_READ, resolved_since=since)
            by_key = await stored_timeline.groups_like(conn, name, since, GROUPS_READ)
            groups = {g.group_hash: g for g in by_labels} | await sa.groups_by_hash(conn, [h for h, *_ in by_key])
            named = [
                (g.group_hash, g.group_key, g.updated_at)
                for g in by_labels
                if any(v.lower() == wanted for v in g.labels.values())
            ] + [(h, key, at) for h, key, at, _n in by_key if _named(key, name)]
            named.sort(key=lambda found: -found[2])
            mine = list(
                {
                    h: key
                    for h, key, _at in named
                    if self._may_act_on(actor, g.receivers if (g := groups.get(h)) else [])
                }.items()
            )[:WHY_GROUPS]
            events = {h: await stored_timeline.group_events(conn, h, WHY_LINES) for h, _ in mine}
        if not mine:
            return Answer(f"No alert group named {name} that you may act on in the last 7 days.", ActionOutcome.DONE)
        lines = []
        for h, key in mine:
            lines.append(f"{key}:")
            for e in events[h]:
                who = f" {e.subject}:" if e.subject and not e.subject.startswith("routes") else ""
                lines.append(f"  {clock_time(e.at, zone)}{who} {e.text}")
        return Answer("\n".join(lines), ActionOutcome.DONE)


def _named(group_key: str, name: str) -> bool:
    """Whether a group key names `name` as a label's whole value (alertname="X", bot="X"), not only inside one."""
    return f'="{name.lower()}"' in group_key.lower()
