"""Escalation: a page nobody acts on gets louder.

A route may carry steps (`escalation: [{after, receivers}]`). The intake arms a chain when an alert of a group fires
anew on such a route (store/escalations.follow). The ticker here then, about every second, in one transaction per
pass:

- starts an armed chain once the group's message to the route's receivers was sent (not while quiet hours defer it):
  the steps count from that moment;
- ends a chain whose group was acknowledged (from the chat, or on a phone through Pushover) or silenced; a page
  not yet sent is taken back (the action itself does it; the pass takes one a worker held at that moment);
- fires a step that is due: the step's receivers get the group's newest message with a line saying why;
- tells every receiver a step paged when the group resolves.

What a pass does to a chain and the messages it queues are one transaction, and on PostgreSQL a replica takes the
chains it acts on with SKIP LOCKED: a step fires once, across replicas and a `kill -9` between steps. Each of these
moments is a line of the group's timeline and a count in `notifier_escalations_total`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import msgspec
from sqlalchemy.engine import Connection

from notifier import failpoints
from notifier.clock import Clock
from notifier.domain import ChangeRecord, Delivery, EventKind, TimelineEvent
from notifier.metrics import NotifierMetrics
from notifier.schedules import Schedule
from notifier.store import Store, new_id
from notifier.store import actions as store_actions
from notifier.store import escalations as chains
from notifier.store.escalations import Chain, ChainState
from notifier.store.repository import queue_newest
from notifier.store.timeline import record
from notifier.tasks import cancel_and_wait, repeat
from notifier.templates.context import clock_time, format_duration

log = logging.getLogger("notifier.escalation")
TICK = 1.0  # seconds between passes


@dataclass(slots=True)
class Pass:
    """What one pass did, for the log, the metrics and waking the worker."""

    queued: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


class Escalator:
    """The escalation ticker (see the module's docstring)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        metrics: NotifierMetrics,
        targets: Mapping[str, list[tuple[str, str]]],
        send_resolved: Mapping[str, bool],
        schedules: Mapping[str, Schedule],
        *,
        timeline: bool = True,
        zone: str = "UTC",
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        """`targets`: receiver -> its (target key, channel); `send_resolved`: receiver -> whether it is told of a
        resolve; `schedules`: the quiet-hours schedules by name; `wake` tells the worker that messages wait."""
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._targets = targets
        self._send_resolved = send_resolved
        self._schedules = schedules
        self._record = timeline
        self._zone = zone
        self._wake = wake
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="escalation")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        await repeat(self.run_once, TICK, "escalation pass", log)

    async def run_once(self) -> Pass:
        done: Pass = await self._store.run_in_transaction(self.act)
        if done.outcomes.get("escalated"):
            failpoints.reached("escalation.fired")  # a step committed, its messages not yet handed to the worker
        for outcome, n in done.outcomes.items():
            self._metrics.escalations.labels(outcome).inc(n)
        if done.queued:
            self._wake()
        return done

    # -- one pass, in one transaction ----------------------------------------------------------------------------
    def act(self, conn: Connection) -> Pass:
        now = self._clock.now()
        done = Pass()
        events: list[TimelineEvent] = []
        for chain in chains.to_act_on(conn, now):
            changed = self._act_on(conn, chain, now, done, events)
            if changed is not chain:
                chains.save(conn, msgspec.structs.replace(changed, updated_at=now))
        if self._record:
            record(conn, events)
        return done

    def _act_on(self, conn: Connection, chain: Chain, now: float, done: Pass, events: list[TimelineEvent]) -> Chain:
        if chain.state is ChainState.RESOLVED:
            return self._resolved(conn, chain, now, done, events)
        ended = self._ended_by(conn, chain, now)
        if ended is not None:
            outcome, why = ended
            done.count(outcome)
            events.append(self._event(chain, now, "ended", f"escalation chain ended: {why}"))
            # the action took back the pages still waiting; one a worker held then and let go since is taken now
            chains.take_back_pages(conn, chain.group_hash, now, why, timeline=self._record)
            return msgspec.structs.replace(chain, state=ChainState.ENDED, due_at=None, ended=why)
        if chain.state is ChainState.ARMED:
            sent = chains.first_sent(conn, chain.group_hash, chain.route_receivers, chain.armed_at)
            if sent is None:
                return chain  # not sent yet: deferred by quiet hours, or waiting for the provider
            chain = msgspec.structs.replace(
                chain, state=ChainState.RUNNING, started_at=sent, step=0, due_at=sent + chain.steps[0].after
            )
            done.count("started")
            events.append(self._due_event(chain, now))
        if chain.due_at is not None and chain.due_at <= now:
            return self._fire(conn, chain, now, done, events)
        return chain

    def _ended_by(self, conn: Connection, chain: Chain, now: float) -> tuple[str, str] | None:
        state = store_actions.group_actions(conn, [chain.group_hash], now).get(chain.group_hash)
        if state is None:
            return None
        if state.acked_by:
            return "acknowledged", f"acknowledged by {state.acked_by}"
        if state.silenced_until is not None and state.silenced_until > now and state.silence_id:
            until = clock_time(state.silenced_until, self._zone)
            return "silenced", f"silenced by {state.silenced_by} until {until}"
        return None

    def _fire(self, conn: Connection, chain: Chain, now: float, done: Pass, events: list[TimelineEvent]) -> Chain:
        step = chain.steps[chain.step]
        assert chain.started_at is not None
        waited = format_duration(now - chain.started_at)
        origin = ", ".join(chain.route_receivers)
        note = f"⏫ not acknowledged for {waited}; escalated from {origin}"
        not_before = self._quiet_until(chain, now) if step.respect_quiet_hours else None
        receivers = [r for r in step.receivers if r in self._targets]
        messages = self._messages(chain, receivers, ChangeRecord(note=note), now, not_before)
        queue_newest(conn, messages)
        done.queued += len(messages)
        done.count("escalated")
        held = f", held by quiet hours until {clock_time(not_before, self._zone)}" if not_before else ""
        events.append(
            self._event(
                chain,
                now,
                "escalated",
                f"escalated to {', '.join(receivers)} (step {chain.step + 1} of {len(chain.steps)}): not "
                f"acknowledged for {waited}{held}",
            )
        )
        log.warning("escalated %s to %s (step %d)", chain.group_key, ", ".join(receivers), chain.step + 1)
        paged = tuple(dict.fromkeys([*chain.paged, *receivers]))
        following = chain.step + 1
        if following >= len(chain.steps):
            return msgspec.structs.replace(chain, state=ChainState.DONE, step=following, due_at=None, paged=paged)
        chain = msgspec.structs.replace(
            chain, step=following, due_at=chain.started_at + chain.steps[following].after, paged=paged
        )
        events.append(self._due_event(chain, now))
        return chain

    def _resolved(self, conn: Connection, chain: Chain, now: float, done: Pass, events: list[TimelineEvent]) -> Chain:
        never_told = chains.last_word_taken_back(conn, chain.group_hash, chain.paged)
        told = [
            r for r in chain.paged if r in self._targets and self._send_resolved.get(r, True) and r not in never_told
        ]
        messages = self._messages(chain, told, ChangeRecord(), now, None)
        queue_newest(conn, messages)
        done.queued += len(messages)
        done.count("resolved")
        also = f"; told {', '.join(told)} it resolved" if told else ""
        if chain.due_at is not None:  # the step was overdue when the group resolved (see chains.follow)
            step, due = chain.steps[chain.step], clock_time(chain.due_at, self._zone)
            also += (
                f"; step {chain.step + 1} ({', '.join(step.receivers)}), due at {due}, never paged: the group "
                "resolved before the notifier could fire it"
            )
        events.append(self._event(chain, now, "ended", f"escalation chain ended: resolved{also}"))
        return msgspec.structs.replace(chain, state=ChainState.CLOSED, due_at=None, paged=())

    def _messages(
        self, chain: Chain, receivers: list[str], change: ChangeRecord, now: float, not_before: float | None
    ) -> list[Delivery]:
        return [
            Delivery.new(
                id=new_id(),
                notification_id=chain.notification_id,
                receiver=receiver,
                target=target,
                channel=channel,
                group_key=chain.group_key,
                group_hash=chain.group_hash,
                change=change,
                now=now,
                not_before=not_before,
            )
            for receiver in receivers
            for target, channel in self._targets[receiver]
        ]

    def _quiet_until(self, chain: Chain, now: float) -> float | None:
        schedule = self._schedules.get(chain.quiet_schedule or "")
        window = schedule.active_window(now) if schedule is not None else None
        return window[1] if window is not None else None

    def _due_event(self, chain: Chain, now: float) -> TimelineEvent:
        assert chain.due_at is not None
        step = chain.steps[chain.step]
        return self._event(
            chain,
            now,
            "due",
            f"escalation step {chain.step + 1} due at {clock_time(chain.due_at, self._zone)} "
            f"({', '.join(step.receivers)}), unless acknowledged or silenced",
        )

    @staticmethod
    def _event(chain: Chain, now: float, outcome: str, text: str) -> TimelineEvent:
        return TimelineEvent(
            id=new_id(),
            at=now,
            group_hash=chain.group_hash,
            group_key=chain.group_key,
            kind=EventKind.ESCALATION,
            subject=chain.route_path,
            outcome=outcome,
            text=text,
            notification_id=chain.notification_id,
        )
