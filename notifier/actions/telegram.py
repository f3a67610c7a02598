"""How presses and commands arrive from a Telegram bot, and how they are answered.

By default the notifier long-polls `getUpdates` (no public URL needed). Telegram lets one consumer poll a bot at a
time (a second gets 409), so with several replicas on PostgreSQL the poller holds a lease in the store, renewed on
every poll: when its holder dies, another replica takes over once the lease runs out. With `mode: webhook`,
Telegram posts updates to `POST /telegram/updates` with the configured secret token, compared in constant time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from typing import Any

from telegram import Bot, BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import Conflict, TelegramError
from telegram.request import HTTPXRequest

from notifier.actions.commands import COMMANDS, Actor, Answer
from notifier.actions.service import ActionService
from notifier.clock import Clock
from notifier.domain import ActionButton, ActionOutcome
from notifier.errors import StoreUnavailable
from notifier.settings import TelegramUpdates
from notifier.store import Store, leases
from notifier.store import actions as sa
from notifier.tasks import cancel_and_wait

log = logging.getLogger("notifier.telegram.updates")
ALLOWED_UPDATES = ("message", "callback_query")
RETRY_AFTER_FAILURE = 5.0
MAX_CALLBACK_TEXT = 200  # Telegram shows 0-200 characters in the answer to a press
UPDATE_MEMORY = 7 * 86400.0  # an update id is remembered this long (Telegram keeps unconfirmed updates 24 hours)


class TelegramUpdatesListener:
    """One bot's updates: a poller (or the webhook's handler) that hands presses and commands to the service."""

    def __init__(
        self,
        token: str,
        api_url: str,
        settings: TelegramUpdates,
        service: ActionService,
        store: Store,
        clock: Clock,
        owner: str,
    ) -> None:
        self._settings = settings
        self._service = service
        self._store = store
        self._clock = clock
        self._owner = owner
        tag = hashlib.sha256(token.encode()).hexdigest()[:12]
        self.lease_name = f"telegram-updates:{tag}"
        poll = float(settings.poll_timeout)
        request = HTTPXRequest(connection_pool_size=4, read_timeout=poll + 10, connect_timeout=5.0, pool_timeout=5.0)
        self._bot = Bot(token, base_url=f"{api_url}/bot", request=request)
        self._answers = Bot(token, base_url=f"{api_url}/bot", request=HTTPXRequest(connection_pool_size=8))
        self._task: asyncio.Task[None] | None = None
        self._handling: set[asyncio.Task[None]] = set()
        self._offset: int | None = None
        self._conflict_logged = False
        self.bot_name = ""
        self.polling = False  # holds the lease and polls

    async def start(self) -> None:
        """In the background: the bot's commands (and its webhook) are published, then, with polling, updates are
        polled. The notifier is ready meanwhile: Telegram being slow or down must not hold up its start."""
        self._task = asyncio.create_task(self._run(), name=self.lease_name)

    async def _run(self) -> None:
        with contextlib.suppress(TelegramError):
            me = await self._answers.get_me()
            self.bot_name = me.username or ""
        try:
            await self._answers.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])
            if self._settings.mode == "webhook":
                assert self._settings.webhook_url is not None
                await self._answers.set_webhook(
                    self._settings.webhook_url,
                    secret_token=str(self._settings.secret_token),
                    allowed_updates=list(ALLOWED_UPDATES),
                )
        except TelegramError as exc:
            log.warning("could not set up the Telegram bot's commands or webhook: %s", exc.message)
        if self._settings.mode == "polling":
            await self._poll()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self.polling:
            with contextlib.suppress(Exception):
                await self._store.run_in_transaction(lambda conn: leases.drop_lease(conn, self.lease_name, self._owner))
            self.polling = False
        for t in list(self._handling):
            await cancel_and_wait(t)
        for bot in (self._bot, self._answers):
            with contextlib.suppress(TelegramError):
                await bot.shutdown()

    async def _poll(self) -> None:
        lease = float(self._settings.lease)
        while True:
            try:
                held = await self._take_lease(lease)
            except Exception as exc:
                log.warning("Telegram poller: the store is unavailable (%s)", exc)
                held = False
            if held != self.polling:
                log.info("Telegram poller %s: %s", self.lease_name, "polling" if held else "another replica polls")
                self.polling = held
            if not held:
                await asyncio.sleep(min(lease / 3, RETRY_AFTER_FAILURE))
                continue
            try:
                updates = await self._bot.get_updates(
                    offset=self._offset,
                    timeout=int(self._settings.poll_timeout),
                    allowed_updates=list(ALLOWED_UPDATES),
                )
            except Conflict as exc:
                if not self._conflict_logged:
                    log.warning(
                        "Telegram answered 409 to getUpdates (%s): another process polls this bot, or a webhook is "
                        "set; backing off",
                        exc.message,
                    )
                    self._conflict_logged = True
                await asyncio.sleep(RETRY_AFTER_FAILURE)
                continue
            except TelegramError as exc:
                log.warning("Telegram getUpdates failed: %s", exc.message)
                await asyncio.sleep(RETRY_AFTER_FAILURE)
                continue
            self._conflict_logged = False
            for update in updates:
                self._offset = update.update_id + 1
                self._dispatch(update)

    async def _take_lease(self, ttl: float) -> bool:
        now = self._clock.now()
        held: bool = await self._store.run_in_transaction(
            lambda conn: leases.take_lease(conn, self.lease_name, self._owner, now, ttl)
        )
        return held

    def accept(self, data: dict[str, Any], secret: str | None) -> bool:
        """The webhook's update, if it carries our secret token; handled in the background (Telegram waits for
        the answer to the POST, not for the work)."""
        expected = str(self._settings.secret_token or "")
        if not expected or not hmac.compare_digest((secret or "").encode(), expected.encode()):
            return False
        update = Update.de_json(data, self._answers)
        if update is not None:
            self._dispatch(update)
        return True

    def _dispatch(self, update: Update) -> None:
        t = asyncio.create_task(self._handle(update), name=f"telegram-update-{update.update_id}")
        self._handling.add(t)
        t.add_done_callback(self._handling.discard)

    async def _first_sight(self, update_id: int) -> bool:
        """Each update is handled once, however often it comes (a webhook resent, a poller that took over)."""
        now, key = self._clock.now(), f"{self.lease_name}:{update_id}"
        seen: bool = await self._store.run_in_transaction(lambda conn: sa.first_sight(conn, key, now, UPDATE_MEMORY))
        return seen

    async def _handle(self, update: Update) -> None:
        try:
            try:
                first = await self._first_sight(update.update_id)
            except StoreUnavailable as exc:
                # Whether it came before cannot be told now: it is handled (a press or command done twice changes
                # nothing twice), and the service tries the store again, then says it is away if it stays away.
                log.warning("Telegram update %s: the store is unavailable (%s)", update.update_id, exc)
                first = True
            if not first:
                log.info("Telegram update %s came again; it was handled once", update.update_id)
                return
            if update.callback_query is not None:
                await self._press(update)
            elif update.message is not None and update.message.text:
                await self._command(update)
        except Exception:
            log.exception("Telegram update %s could not be handled", update.update_id)

    async def _press(self, update: Update) -> None:
        q = update.callback_query
        assert q is not None
        user = q.from_user
        actor = Actor("telegram", str(user.id), user.username or "")
        if q.data is None:
            answer = Answer("This button has expired.", ActionOutcome.EXPIRED)
        else:
            answer = await self._service.press(actor, q.data)
        alert = answer.outcome in (ActionOutcome.REFUSED, ActionOutcome.FAILED)
        try:
            await self._answers.answer_callback_query(q.id, text=answer.text[:MAX_CALLBACK_TEXT], show_alert=alert)
        except TelegramError as exc:
            log.warning("could not answer a Telegram button press: %s", exc.message)

    async def _command(self, update: Update) -> None:
        m = update.message
        assert m is not None and m.text is not None
        user = m.from_user
        actor = Actor("telegram", str(user.id) if user else "", (user.username or "") if user else "")
        answer = await self._service.command(actor, m.text, self.bot_name)
        if answer is None:
            return
        text, markup = telegram_answer(answer)
        try:
            await self._answers.send_message(
                chat_id=m.chat.id,
                text=text,
                reply_markup=markup,
                message_thread_id=m.message_thread_id if m.is_topic_message else None,
            )
        except TelegramError as exc:
            log.warning("could not answer a Telegram command: %s", exc.message)


def telegram_answer(answer: Answer) -> tuple[str, InlineKeyboardMarkup | None]:
    """A command's answer as one Telegram message: its lines numbered, and a row of buttons per numbered line."""
    if not answer.rows:
        return answer.text, None
    lines = [answer.text]
    keyboard: list[list[InlineKeyboardButton]] = []
    for i, (line, buttons) in enumerate(answer.rows, start=1):
        lines.append(f"{i}. {line}")
        if buttons:
            keyboard.append([_button(f"{i}: {b.label}", b) for b in buttons])
    return "\n".join(lines), InlineKeyboardMarkup(keyboard) if keyboard else None


def _button(label: str, b: ActionButton) -> InlineKeyboardButton:
    return InlineKeyboardButton(label, callback_data=b.action_id)
