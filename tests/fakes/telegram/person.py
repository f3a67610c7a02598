"""A person's side of the fake chat: presses and commands become updates that getUpdates serves (long polling,
with Telegram's 409s for a second poller or a webhook that is set), callback queries are answered once, and the
`/_fake/` endpoints let `make stack --chat-actions` read the chat, press a button and write."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from tests.fakes.telegram.messages import Photo, Sent
from tests.fakes.telegram.rules import api_error, check_html


class PersonSide:
    """Mixed into FakeTelegram, whose fields these are."""

    sent: list[Sent]
    photos: list[Photo]
    updates: list[dict[str, Any]]
    callback_answers: list[dict[str, Any]]
    webhook: dict[str, Any] | None
    conflicts: int
    _update_id: int
    _open_callbacks: set[str]
    _waiting_poll: asyncio.Future[None] | None
    _new_update: asyncio.Event | None

    # -- a person's side of the chat (make stack --chat-actions) ----

    async def _fake_messages(self, request: web.Request) -> web.Response:
        out = []
        for m in self.sent:
            rows = (m.reply_markup or {}).get("inline_keyboard", [])
            out.append(
                {
                    "message_id": m.message_id,
                    "chat_id": m.chat_id,
                    "text": check_html(m.text) if m.parse_mode == "HTML" else m.text,
                    "buttons": [b["text"] for row in rows for b in row if "callback_data" in b],
                }
            )
        answers = [a["text"] for a in self.callback_answers]
        photos = [
            {
                "message_id": ph.message_id,
                "chat_id": ph.chat_id,
                "reply_to": ph.reply_to_message_id,
                "caption": ph.caption,
                "size": f"{ph.width}x{ph.height}",
                "url": f"/_fake/photos/{ph.message_id}.png",
            }
            for ph in self.photos
        ]
        return web.json_response(
            {"messages": out, "photos": photos, "answers": answers},
            dumps=lambda o: json.dumps(o, ensure_ascii=False, indent=1),
        )

    async def _fake_photo(self, request: web.Request) -> web.Response:
        wanted = request.match_info["id"]
        for ph in self.photos:
            if str(ph.message_id) == wanted:
                return web.Response(body=ph.png, content_type="image/png")
        return web.Response(status=404, text="no such photo")

    async def _fake_press(self, request: web.Request) -> web.Response:
        body = await request.json()
        message = next((m for m in self.sent if m.message_id == int(body.get("message_id", 0))), None)
        if message is None:
            return web.json_response({"error": "no such message"}, status=404)
        rows = (message.reply_markup or {}).get("inline_keyboard", [])
        data = next((b["callback_data"] for row in rows for b in row if b["text"] == body.get("button")), None)
        if data is None:
            return web.json_response({"error": "no such button"}, status=404)
        qid = self.press(
            message, data, user_id=int(body.get("user_id", 7001)), username=str(body.get("user", "alice")).lstrip("@")
        )
        return web.json_response({"pressed": body.get("button"), "callback_query": qid})

    async def _fake_say(self, request: web.Request) -> web.Response:
        body = await request.json()
        chat = int(body.get("chat_id", -1001234567890))
        self.say(str(body.get("text", "/help")), chat_id=chat, username=str(body.get("user", "alice")).lstrip("@"))
        return web.json_response({"said": body.get("text")})

    # -- updates: presses and commands ----------------------------------------------------------------------------

    def _push(self, update: dict[str, Any]) -> int:
        self._update_id += 1
        update = {"update_id": self._update_id, **update}
        self.updates.append(update)
        if self._new_update is not None:
            self._new_update.set()
        return self._update_id

    def press(self, message: Sent, data: str, user_id: int = 7001, username: str | None = "alice") -> str:
        """Someone presses a button of `message` whose callback data is `data`: a callback query for getUpdates.
        Returns the query's id."""
        qid = f"cb{self._update_id + 1}"
        self._open_callbacks.add(qid)
        self._push({"callback_query": self.callback_query(qid, message, data, user_id, username)})
        return qid

    def callback_query(
        self, qid: str, message: Sent, data: str, user_id: int = 7001, username: str | None = "alice"
    ) -> dict[str, Any]:
        self._open_callbacks.add(qid)
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": (username or "someone").title()}
        if username:
            user["username"] = username
        chat_id = message.chat_id if isinstance(message.chat_id, int) else -100999
        return {
            "id": qid,
            "from": user,
            "chat_instance": "1",
            "data": data,
            "message": {
                "message_id": message.message_id,
                "date": int(message.at),
                "chat": {"id": chat_id, "type": "supergroup", "title": "alerts"},
                "text": check_html(message.text) if message.parse_mode == "HTML" else message.text,
            },
        }

    def say(self, text: str, chat_id: int = -1001234567890, user_id: int = 7001, username: str | None = "alice") -> int:
        """Someone writes `text` (a command) in a chat: a message update for getUpdates."""
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": (username or "someone").title()}
        if username:
            user["username"] = username
        entities = (
            [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}] if text.startswith("/") else []
        )
        return self._push(
            {
                "message": {
                    "message_id": 9000 + self._update_id,
                    "date": int(time.time()),
                    "chat": {"id": chat_id, "type": "supergroup", "title": "alerts"},
                    "from": user,
                    "text": text,
                    "entities": entities,
                }
            }
        )

    async def _get_updates(self, p: dict[str, Any]) -> web.Response:
        if self.webhook is not None:
            self.conflicts += 1
            return api_error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        if self._waiting_poll is not None and not self._waiting_poll.done():
            # as Telegram does: the request that waited is ended with 409, the new one is served
            self._waiting_poll.set_result(None)
        offset = int(p["offset"]) if p.get("offset") not in (None, "") else None
        if offset is not None:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        timeout = float(p.get("timeout") or 0)
        loop = asyncio.get_running_loop()
        mine: asyncio.Future[None] = loop.create_future()
        self._waiting_poll = mine
        self._new_update = self._new_update or asyncio.Event()
        deadline = loop.time() + timeout
        while not self.updates and loop.time() < deadline and not mine.done():
            self._new_update.clear()
            waiter = asyncio.ensure_future(self._new_update.wait())
            either: set[asyncio.Future[Any]] = {waiter, mine}
            await asyncio.wait(either, timeout=max(0.0, deadline - loop.time()), return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        if mine.done() and self._waiting_poll is not mine:
            self.conflicts += 1
            return api_error(
                409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
            )
        if not mine.done():
            mine.set_result(None)
        return web.json_response({"ok": True, "result": list(self.updates)})

    def _answer_callback(self, p: dict[str, Any]) -> web.Response:
        qid = str(p.get("callback_query_id", ""))
        if qid not in self._open_callbacks:
            return api_error(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        text = p.get("text")
        if text is not None and len(str(text)) > 200:
            return api_error(400, "Bad Request: MESSAGE_TOO_LONG")
        self._open_callbacks.discard(qid)
        self.callback_answers.append(
            {"id": qid, "text": text, "show_alert": p.get("show_alert") in (True, "true", "True"), "at": time.time()}
        )
        return web.json_response({"ok": True, "result": True})
