"""The soak's load: the alert generator (every change recorded for the ledger) and the person who acknowledges
team3's groups from the chat."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.soak_parts.common import CHATS, EVAL, PRESSER, SOAK_ALERT, SOAK_LINE, TEAMS, iso
from bench.soak_parts.parts import Peer
from tests.fakes.telegram import FakeTelegram, ThreadedFake


@dataclass
class Change:
    alert: str
    status: str  # firing | resolved
    at: float
    episode: int


@dataclass
class Generator:
    """Groups of 1 to 4 alerts; each alert fires and resolves with durations drawn from the seed (long enough that
    Alertmanager sees every state: a group flushes every two seconds, a late peer waits two more)."""

    rng: random.Random
    groups: int
    hold: tuple[float, float]
    peers: list[Peer]
    changes: list[Change] = field(default_factory=list)
    errors: int = 0
    _alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # alert -> labels, state, next change
    _stop_firing_at: float = float("inf")

    def setup(self, now: float) -> None:
        for g in range(self.groups):
            for a in range(self.rng.randint(1, 4)):
                name = f"g{g}a{a}"
                labels = {"alertname": f"Soak{g}", "soak": name, "team": f"team{g % TEAMS}", "severity": "warning"}
                first = now + self.rng.uniform(0, self.hold[1])
                self._alerts[name] = {"labels": labels, "firing": False, "since": 0.0, "next": first, "episode": 0}

    def burst(self, now: float, n: int) -> None:
        """A storm: `n` new groups of one alert each fire at the next tick, all at once, and resolve once."""
        first = 1 + max(int(name[1:].split("a")[0]) for name in self._alerts)
        for g in range(first, first + n):
            self._once(g, 0, f"team{g % TEAMS}", now, None)

    def huge(self, now: float, n: int, hold: float) -> None:
        """One group of `n` alerts (team0's) that fire together at the next tick and resolve together `hold`
        seconds later, once."""
        g = 1 + max(int(name[1:].split("a")[0]) for name in self._alerts)
        g += -g % TEAMS  # team0
        for a in range(n):
            self._once(g, a, "team0", now, hold)

    def _once(self, g: int, a: int, team: str, now: float, hold: float | None) -> None:
        """Alert `a` of group `g`: it fires at the next tick and resolves once, after `hold` (or a drawn time)."""
        labels = {"alertname": f"Soak{g}", "soak": f"g{g}a{a}", "team": team, "severity": "warning"}
        self._alerts[f"g{g}a{a}"] = {
            "labels": labels,
            "firing": False,
            "since": 0.0,
            "next": now,
            "episode": 0,
            "once": True,
            "hold": hold,
        }

    def resolve_all_at(self, t: float) -> None:
        self._stop_firing_at = t

    def tick(self, now: float) -> None:
        for name, s in self._alerts.items():
            if now >= s["next"]:
                if s["firing"]:
                    s["firing"] = False
                    self.changes.append(Change(name, "resolved", now, s["episode"]))
                    s["since"] = now
                    s["next"] = float("inf") if s.get("once") else now + self.rng.uniform(*self.hold)
                elif now < self._stop_firing_at - self.hold[0]:  # every episode is held at least hold[0]
                    s["firing"] = True
                    s["episode"] += 1
                    self.changes.append(Change(name, "firing", now, s["episode"]))
                    s["since"] = now
                    s["next"] = now + (s.get("hold") or self.rng.uniform(*self.hold))
            if s["firing"] and now >= self._stop_firing_at and now - s["since"] >= self.hold[0]:
                s["firing"] = False
                self.changes.append(Change(name, "resolved", now, s["episode"]))
                s["since"] = now
                s["next"] = float("inf")
        body = [
            {
                "labels": {"alertname": "Watchdog", "severity": "none"},
                "startsAt": iso(now - 1),
                "endsAt": iso(now + 4 * EVAL),
            }
        ]
        for s in self._alerts.values():
            if s["firing"]:
                body.append({"labels": s["labels"], "startsAt": iso(s["since"]), "endsAt": iso(now + 4 * EVAL)})
            elif s["since"] and now - s["since"] < 60:  # Prometheus keeps sending a resolved alert for a while
                body.append({"labels": s["labels"], "startsAt": iso(s["since"] - 1), "endsAt": iso(s["since"])})
        for p in self.peers:
            try:
                httpx.post(f"{p.url}/api/v2/alerts", json=body, timeout=5).raise_for_status()
            except httpx.HTTPError:
                self.errors += 1  # a peer that is down: Prometheus posts to the other one all the same


@dataclass
class Press:
    at: float
    group: str
    query: str  # the callback query's id, to find its answer
    again: bool = False  # pressed again, as an answer asked


AGAIN = "Press again"  # what the notifier's answer says when it could not reach its database


@dataclass
class Presser:
    """Someone on call acknowledges team3's groups from the chat: 30 to 90 s after the last press, the Ack button of
    team3's newest message that shows an alert firing and came within the last 20 s (well before the group's
    escalation is due). Told to press again (the notifier could not reach its database), they do, 10 s later."""

    rng: random.Random
    tg: ThreadedFake
    acks: list[Press] = field(default_factory=list)
    _next: float = 0.0
    _pressed: set[int] = field(default_factory=set)  # message ids
    _again: dict[str, tuple[Any, str]] = field(default_factory=dict)  # query told to press again -> message, data

    def tick(self, now: float) -> None:
        self._press_again(now)
        if now < self._next:
            return
        self._next = now + 5  # looked again soon while nothing fits; a while after a press
        for m in reversed(list(self.tg.fake.sent)):
            if now - m.at > 20:
                return
            if m.chat_id != CHATS["team3"] or m.message_id in self._pressed:
                continue
            rows = (m.reply_markup or {}).get("inline_keyboard", [])
            data = next((b["callback_data"] for row in rows for b in row if b.get("text") == "Ack"), None)
            firing = [a for a, st in SOAK_LINE.findall(m.text) if st == "firing" and SOAK_ALERT.fullmatch(a)]
            if data is None or not firing:
                continue

            async def press(message: Any = m, data: str = data) -> str:
                return self.tg.fake.press(message, data, PRESSER, "oncall")

            query = asyncio.run_coroutine_threadsafe(press(), self.tg.loop).result(5)
            self._pressed.add(m.message_id)
            self.acks.append(Press(now, firing[0].split("a")[0], query))
            self._again[query] = (m, data)
            self._next = now + self.rng.uniform(30, 90)
            return

    def _press_again(self, now: float) -> None:
        """The same button again, 10 s after an answer that asked for it (the database was away)."""
        told = {str(a["id"]): float(a["at"]) for a in list(self.tg.fake.callback_answers) if AGAIN in str(a["text"])}
        for p in list(self.acks):
            if p.query in self._again and p.query in told and now - told[p.query] >= 10:
                message, data = self._again.pop(p.query)

                async def press(message: Any = message, data: str = data) -> str:
                    return self.tg.fake.press(message, data, PRESSER, "oncall")

                query = asyncio.run_coroutine_threadsafe(press(), self.tg.loop).result(5)
                self.acks.append(Press(now, p.group, query, again=True))
                self._again[query] = (message, data)

    def report(self, fake: FakeTelegram, start: float) -> dict[str, Any]:
        answered = acknowledged(fake)
        texts = {str(a["id"]): str(a["text"]) for a in list(fake.callback_answers)}
        again = [p for p in self.acks if AGAIN in texts.get(p.query, "")]
        late = [p for p in self.acks if p.query not in texts]
        return {
            "pressed": len(self.acks),
            "acknowledged": len([p for p in self.acks if p.query in answered]),
            "press_again": [f"{p.group} pressed at t+{p.at - start:.0f}s" for p in again],
            "unanswered": [f"{p.group} pressed at t+{p.at - start:.0f}s" for p in late],
        }


def acknowledged(fake: FakeTelegram) -> dict[str, float]:
    """Callback query id -> when the notifier answered it, for the presses it acknowledged."""
    return {
        str(a["id"]): float(a["at"])
        for a in list(fake.callback_answers)
        if str(a.get("text") or "").startswith("Acknowledged")
    }
