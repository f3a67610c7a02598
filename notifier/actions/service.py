"""What a press or a command from the chat does.

Who may act is decided by the group acted on, never by the chat the request came from (actions/permissions.py).
A press names a stored action (the button's random id); the service checks that the action is known and fresh and
that the person may act on its group, then acknowledges the group (stored, across receivers), or silences it
through Alertmanager -- with matchers that cover exactly the group, after asking Alertmanager which alerts they
would cover -- or undoes either; then every copy of the group's current message that can be edited gets an EDIT
message in the outbox, so the edits are retried like any message. Commands show only what the asker may act on;
/silences lists and Unsilence expires only the silences this notifier made. Every press and command is recorded
(who, what, when, outcome), logged and counted.

When the store cannot be reached, a press or command is tried again for a few seconds (a database restart), then
answered with what happened and what to do: never left without an answer, so the person knows to press again.
Trying again is safe: acknowledging is idempotent, and a silence is claimed in the store before Alertmanager makes
it, so a second try never makes a second one. A silence Alertmanager made while the store stayed away holds; it is
recorded in the background once the store is back, so that the chat's copies show it without a second press.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from notifier import failpoints
from notifier.actions.buttons import is_action_id
from notifier.actions.commands import COMMANDS, HELP, Actor, Answer, CommandAnswers
from notifier.actions.permissions import Permissions
from notifier.channels.registry import PLUGINS
from notifier.clock import Clock
from notifier.domain import ActionOutcome, ChatAction, EventKind, TimelineEvent
from notifier.errors import StoreUnavailable
from notifier.matchers import parse_group_key
from notifier.metrics import NotifierMetrics
from notifier.redaction import redact
from notifier.settings import ActionsSettings, Settings
from notifier.silences import OWN_COMMENT, Matcher, SilenceClient, SilenceError, group_matchers
from notifier.store import Store, new_id
from notifier.store import actions as sa
from notifier.store import escalations as chains
from notifier.store.timeline import record
from notifier.tasks import cancel_and_wait
from notifier.templates.context import clock_time

log = logging.getLogger("notifier.actions")
PLACEHOLDER_HOLD = 60.0  # how long a press holds a group while its silence is being made
STORE_RETRY_DELAYS = (0.5, 1.0, 2.0)  # seconds between the tries of a press or command while the store is away
# seconds between the background tries to record a silence made while the store was away; the last one repeats
RECORD_LATER_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0)
STORE_AWAY = (
    "Could not finish: the notifier cannot reach its database right now. Press again (or send the command again) "
    "in a minute."
)


@dataclass(slots=True)
class _Made:
    """What one press made outside the store, kept across its tries: a silence Alertmanager made on an earlier try
    is recorded by the next one, never made twice."""

    silence_id: str = ""
    ends_at: float = 0.0
    group_hash: str = ""
    group_key: str = ""
    claimed_at: float = 0.0  # when the press claimed the group (its placeholder's `at`)


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
        self._editable = [key for r in settings.receivers for key, ch, t in r.targets() if PLUGINS[ch].buttons(t)]
        self._who = Permissions(settings, settings.actions)
        self._later: set[asyncio.Task[None]] = set()  # silences being recorded once the store is back
        self._answers = CommandAnswers(
            self._actions,
            store,
            silences,
            clock,
            self._who.may_act_on,
            timeline=settings.storage.timeline,
            watchdog=settings.watchdog is not None,
        )

    # -- presses ------------------------------------------------------------------------------------------------------

    async def press(self, actor: Actor, action_id: str) -> Answer:
        made = _Made()
        try:
            return await retrying_store(lambda: self._press(actor, action_id, made))
        except StoreUnavailable as exc:
            log.warning("chat press by %s not finished: the store is unavailable (%s)", actor.shown(), exc)
            answer = Answer(STORE_AWAY, ActionOutcome.FAILED)
            if made.silence_id:
                until = clock_time(made.ends_at, self._actions.timezone)
                answer = Answer(
                    f"Silenced in Alertmanager until {until}. The notifier cannot reach its database right now; the "
                    "silence holds, and shows here once the database is back.",
                    ActionOutcome.DONE,
                )
                self._record_later(actor, made)
            return await self._done(actor, "press", None, answer)

    def _record_later(self, actor: Actor, made: _Made) -> None:
        task = asyncio.create_task(self._record_when_back(actor, made), name=f"record-silence-{made.silence_id}")
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _record_when_back(self, actor: Actor, made: _Made) -> None:
        """Record a silence the press made while the store stayed away, once the store is back, unless the silence
        ended meanwhile (it expired, or someone expired it in Alertmanager), or the group resolved or holds another
        silence now. A restart loses this; pressing Silence again then replaces the unrecorded silence."""
        sid = made.silence_id
        for i in itertools.count():
            await asyncio.sleep(RECORD_LATER_DELAYS[min(i, len(RECORD_LATER_DELAYS) - 1)])
            if self._clock.now() >= made.ends_at:
                log.info("silence %s ended before the notifier could record it", sid)
                return
            try:
                if not any(s.id == sid for s in await self._silences.active()):
                    log.info("silence %s is no longer in force in Alertmanager; not recorded", sid)
                    return
                recorded = await self._record_silence(actor, made, self._clock.now(), late=True)
            except (StoreUnavailable, SilenceError) as exc:
                log.debug("silence %s not recorded yet: %s", sid, exc)
                continue
            except Exception:  # a bug: the silence holds, and pressing again records it
                log.exception("recording silence %s failed", sid)
                return
            if not recorded:
                log.info("silence %s not recorded: its group resolved or holds another silence now", sid)
            else:
                log.info("silence %s by %s recorded once the database was back", sid, actor.shown())
            return

    async def stop(self) -> None:
        """End the background recording of silences (pressing Silence again records or replaces them)."""
        for task in list(self._later):
            await cancel_and_wait(task)

    async def _press(self, actor: Actor, action_id: str, made: _Made) -> Answer:
        now = self._clock.now()
        expired = Answer("This button has expired.", ActionOutcome.EXPIRED)
        if not is_action_id(action_id):
            return await self._done(actor, "press", None, expired)
        stored = await self._store.run_in_transaction(lambda conn: sa.get_action(conn, action_id))
        if stored is None or now - stored.created_at > self._actions.button_lifetime:
            return await self._done(actor, "press", None, expired)
        gh = stored.group_hash
        if stored.action is ChatAction.EXPIRE:
            sid = stored.silence_id or ""
            own = await self._store.run_in_transaction(lambda conn: sa.own_silence(conn, sid))
            if own is None:  # never one of ours: nothing to expire from here
                return await self._done(actor, "expire", None, expired)
            gh = own.group_hash
        group = await self._store.run_in_transaction(lambda conn: sa.get_group(conn, gh))
        if not self._who.may_act_on(actor, group.receivers if group is not None else []):
            answer = self._who.refusal(actor, "You may not act on this alert group")
            return await self._done(actor, stored.action.value, gh, answer)
        if group is None and stored.action is not ChatAction.EXPIRE:
            return await self._done(actor, stored.action.value, gh, expired)
        if stored.action is ChatAction.ACK:
            answer = await self._ack(actor, gh, now)
        elif stored.action is ChatAction.UNACK:
            answer = await self._unack(gh, now)
        elif stored.action is ChatAction.SILENCE:
            assert group is not None and stored.duration is not None
            answer = await self._silence(actor, group, stored.duration, now, made)
        elif stored.action is ChatAction.UNSILENCE:
            answer = await self._unsilence(gh, now)
        else:
            assert stored.silence_id is not None
            answer = await self._expire(stored.silence_id, gh)
        failpoints.reached("action.done")  # the press is carried out and stored, not yet recorded nor answered
        return await self._done(actor, stored.action.value, gh, answer, group.group_key if group else "")

    async def _ack(self, actor: Actor, gh: str, now: float) -> Answer:
        timeline = self._settings.storage.timeline

        def ack(conn: Connection) -> bool:
            if not sa.set_ack(conn, gh, actor.shown(), actor.channel, now):
                return False
            chains.take_back_pages(conn, gh, now, f"acknowledged by {actor.shown()}", timeline=timeline)
            return True

        if await self._change(gh, now, ack):
            return Answer(f"Acknowledged by {actor.shown()}.", ActionOutcome.DONE)
        return Answer("Acknowledged already.", ActionOutcome.UNCHANGED)

    async def _unack(self, gh: str, now: float) -> Answer:
        def unack(conn: Connection) -> bool:
            sa.clear_acks(conn, [gh])
            return True

        await self._change(gh, now, unack)
        return Answer("No longer acknowledged.", ActionOutcome.DONE)

    async def _silence(
        self, actor: Actor, group: sa.AlertGroupRecord, duration: float, now: float, made: _Made
    ) -> Answer:
        gh = group.group_hash
        if made.silence_id:  # an earlier try of this press made it, and could not record it
            return await self._keep_silence(actor, made, now)
        try:
            matchers = group_matchers(parse_group_key(group.group_key))
        except ValueError:
            matchers = []
        if not matchers:
            return Answer(
                "This group has no labels a silence could match it by alone (its route groups by nothing); "
                "silence it in Alertmanager.",
                ActionOutcome.REFUSED,
            )
        ours, sid, until, by = await self._store.run_in_transaction(
            lambda conn: sa.claim_silence(conn, gh, actor.shown(), now, PLACEHOLDER_HOLD)
        )
        zone = self._actions.timezone
        if not ours:
            if sid:
                return Answer(f"Silenced already, until {clock_time(until, zone)} by {by}.", ActionOutcome.UNCHANGED)
            return Answer(f"{by} is silencing this group right now.", ActionOutcome.UNCHANGED)
        try:
            refusal = await self._beyond_the_group(gh, matchers)
            if refusal is not None:
                await self._store.run_in_transaction(lambda conn: sa.clear_silence(conn, gh, silence_id=""))
                return refusal
            end = now + duration
            channel = actor.channel.capitalize()
            shown = ", ".join(m.text() for m in matchers)
            # The group holds no silence of the notifier's that the store knows of (the claim above says so), but
            # Alertmanager may: one made right before a crash or the database's loss. It is replaced, so that
            # pressing again leaves one silence.
            unrecorded = await self._silences.own_in_force(matchers)
            sid = await self._silences.create(
                matchers,
                now,
                end,
                f"{actor.shown()} via {channel}",
                f"{OWN_COMMENT}{channel} message about {{{shown}}}",
                replacing=unrecorded.id if unrecorded is not None else None,
            )
        except SilenceError as exc:
            await self._store.run_in_transaction(lambda conn: sa.clear_silence(conn, gh, silence_id=""))
            return Answer(f"Could not create the silence: {redact(str(exc))}", ActionOutcome.FAILED)
        made.silence_id, made.ends_at = sid, end
        made.group_hash, made.group_key, made.claimed_at = gh, group.group_key, now
        return await self._keep_silence(actor, made, now)

    async def _keep_silence(self, actor: Actor, made: _Made, now: float) -> Answer:
        """Record the silence Alertmanager made for this press, and say so."""
        await self._record_silence(actor, made, now)
        return Answer(f"Silenced until {clock_time(made.ends_at, self._actions.timezone)}.", ActionOutcome.DONE)

    async def _record_silence(self, actor: Actor, made: _Made, now: float, *, late: bool = False) -> bool:
        """Record the silence Alertmanager made: the group shows it, and its pending pages are taken back. `late`:
        in the background, after the press was answered; then only while the group fires and holds the press's
        claim, that silence or none (else False), and with the press's line in the action log and timeline."""
        gh, sid, end, zone = made.group_hash, made.silence_id, made.ends_at, self._actions.timezone
        own = sa.OwnSilence(silence_id=sid, group_hash=gh, created_by=actor.shown(), ends_at=end, created_at=now)

        def keep(conn: Connection) -> bool:
            if late and not sa.may_record_silence(conn, gh, sid, made.claimed_at, now):
                return False
            if late and ((group := sa.get_group(conn, gh)) is None or group.firing == 0):
                return False  # resolved meanwhile: a resolved group keeps no silence record (see clear_acks)
            sa.set_silence(conn, gh, sid, actor.shown(), end, now)
            sa.add_own_silence(conn, own)
            why = f"silenced by {actor.shown()} until {clock_time(end, zone)}"
            chains.take_back_pages(conn, gh, now, why, timeline=self._settings.storage.timeline)
            if late:
                text = f"Silenced until {clock_time(end, zone)}; recorded once the database was back."
                self._record_action(conn, actor, "silence", gh, Answer(text, ActionOutcome.DONE), made.group_key, now)
            return True

        return await self._change(gh, now, keep)

    async def _beyond_the_group(self, gh: str, matchers: list[Matcher]) -> Answer | None:
        """A refusal if the silence would also cover alerts that are not the group's, naming some of them."""
        covered = await self._silences.alerts(matchers)
        mine = await self._store.run_in_transaction(lambda conn: sa.group_fingerprints(conn, gh))
        outside = [a for a in covered if a.fingerprint not in mine]
        if not outside:
            return None
        named = "; ".join("{" + ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items())) + "}" for a in outside[:3])
        more = f" and {len(outside) - 3} more" if len(outside) > 3 else ""
        return Answer(
            f"Not silenced: a silence of this group would also silence {len(outside)} alert(s) outside it: "
            f"{named}{more}. Silence it in Alertmanager if that is what you want.",
            ActionOutcome.REFUSED,
        )

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
        now = self._clock.now()

        def forget(conn: Connection) -> bool:
            sa.clear_silence(conn, silence_id=silence_id)
            sa.end_own_silence(conn, silence_id, now)
            return True

        await self._change(gh, now, forget)
        return Answer("Silence expired.", ActionOutcome.DONE)

    async def _change(self, gh: str, now: float, change: Callable[[Connection], bool]) -> bool:
        """`change(conn)` (True: it changed the group), in one transaction with the edits that show the change on
        the group's chat copies: a press that is done shows on them even if the process dies right after."""

        def write(conn: Connection) -> tuple[bool, int]:
            if not change(conn):
                return False, 0
            return True, sa.queue_edits(conn, gh, self._editable, now)

        changed, queued = await self._store.run_in_transaction(write)
        if queued:
            self._wake()
        return changed

    async def _done(self, actor: Actor, action: str, gh: str | None, answer: Answer, group_key: str = "") -> Answer:
        """Record, log and count what happened; the record is best effort (the action itself is done). An action
        on a known group is a line of its timeline too."""
        now = self._clock.now()
        try:
            await self._store.run_in_transaction(
                lambda conn: self._record_action(conn, actor, action, gh, answer, group_key, now)
            )
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

    def _record_action(
        self, conn: Connection, actor: Actor, action: str, gh: str | None, answer: Answer, group_key: str, now: float
    ) -> None:
        """The action log's row, and the group's timeline line when the group is known and the timeline kept."""
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
        if gh and group_key and self._settings.storage.timeline:
            text = f"{action} by {actor.shown()} via {actor.channel.capitalize()}: {answer.text}"
            line = TimelineEvent(
                id=new_id(),
                at=now,
                group_hash=gh,
                group_key=group_key,
                kind=EventKind.ACTION,
                subject=actor.shown(),
                outcome=answer.outcome.value,
                text=text,
            )
            record(conn, [line])

    # -- commands -----------------------------------------------------------------------------------------------------

    async def command(self, actor: Actor, text: str, bot_name: str = "") -> Answer | None:
        """The answer to `/alerts`, `/silences`, `/status`, `/why NAME` or `/help` (also `/alerts@BotName`); None for
        text that is no command of ours (another bot's, or a message). Each shows only what the asker may act on."""
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
            kind = {"telegram": "Telegram", "slack": "Slack"}.get(actor.channel, actor.channel)
            text = f"{HELP}\n\nYour {kind} user id: {actor.id or '?'}"
            return await self._done(actor, "help", None, Answer(text, ActionOutcome.DONE))
        receivers = self._who.receivers_of(actor)
        if not receivers:
            return await self._done(actor, name, None, self._who.refusal(actor, "You may not ask the notifier"))
        try:
            answer = await retrying_store(lambda: self._answer(actor, name, text, receivers))
        except StoreUnavailable as exc:
            log.warning("chat command /%s by %s not answered: the store is unavailable (%s)", name, actor.shown(), exc)
            answer = Answer(STORE_AWAY, ActionOutcome.FAILED)
        return await self._done(actor, name, None, answer)

    async def _answer(self, actor: Actor, name: str, text: str, receivers: list[str]) -> Answer:
        if name == "alerts":
            answer = await self._answers.alerts(actor)
        elif name == "silences":
            answer = await self._answers.own_silences(actor)
        elif name == "why":
            answer = await self._answers.why(actor, text.strip().partition(" ")[2].strip())
        else:
            answer = await self._answers.status(actor, receivers)
        return answer


async def retrying_store(attempt: Callable[[], Awaitable[Answer]]) -> Answer:
    """`attempt()`, tried again after each of STORE_RETRY_DELAYS while the store is unavailable; the last
    StoreUnavailable propagates."""
    for delay in STORE_RETRY_DELAYS:
        try:
            return await attempt()
        except StoreUnavailable:
            await asyncio.sleep(delay)
    return await attempt()
