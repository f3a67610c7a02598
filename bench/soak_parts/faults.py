"""The soak's faults: their schedule drawn from the seed, quiet hours, and the faults as they happened."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from bench.soak_parts.common import HUGE, RECORD_WITHIN


@dataclass
class Fault:
    at: float  # seconds after the start
    kind: str
    target: int
    length: float

    def __str__(self) -> str:
        what = {
            "kill_replica": f"kill -9 replica {self.target}, restart after {self.length:.0f}s",
            "pg_restart": f"PostgreSQL cut for {self.length:.0f}s (a fast restart)",
            "pg_down": f"PostgreSQL down for {self.length:.0f}s",
            "kill_peer": f"kill -9 Alertmanager peer {self.target}, restart after {self.length:.0f}s",
            "tg_429": "Bot API: 429 with retry_after 2 for the next 6 calls",
            "tg_5xx": "Bot API: 502 for the next 6 calls",
            "tg_slow": f"Bot API: 10 s per call for {self.length:.0f}s",
            "slack_429": "Slack: 429 with Retry-After 2 for the next 6 calls",
            "smtp_451": "SMTP: 451 for the next 4 messages",
            "tg_reset": "Bot API: the next 3 messages taken, then their connections reset before the answer",
            "storm": f"storm: {self.target} new groups fire at once",
            "huge": f"one group of {self.target} alerts fires, and resolves {self.length:.0f}s later",
            "quiet": f"quiet hours of team2 (email, defer) open for {self.length:.0f}s",
        }[self.kind]
        return f"t+{self.at:5.0f}s  {what}"


def schedule(rng: random.Random, seconds: float, quick: bool) -> list[Fault]:
    """Faults in the first 70 % of the run; the rest lets everything drain."""
    span = seconds * 0.7
    faults: list[Fault] = []
    t = rng.uniform(10, 20)
    while t < span:  # a replica killed every few minutes (quick: two)
        faults.append(Fault(t, "kill_replica", rng.randrange(3), rng.uniform(3, 8)))
        t += rng.uniform(span / 3, span / 2) if quick else rng.uniform(90, 180)
    faults.append(Fault(rng.uniform(0.1, 0.6) * span, "pg_restart", 0, 2))
    faults.append(Fault(rng.uniform(0.2, 0.5) * span, "pg_down", 0, 10 if quick else 60))
    faults.append(Fault(rng.uniform(0.1, 0.7) * span, "kill_peer", rng.randrange(2), 10 if quick else 20))
    for kind in ("tg_429", "tg_5xx", "slack_429", "smtp_451"):
        faults.append(Fault(rng.uniform(0.05, 0.9) * span, kind, 0, 0))
    faults.append(Fault(rng.uniform(0.1, 0.8) * span, "tg_slow", 0, 8 if quick else 30))
    faults.append(Fault(rng.uniform(0.05, 0.9) * span, "tg_reset", 0, 0))
    faults.append(Fault(rng.uniform(0.2, 0.6) * span, "storm", 24 if quick else 48, 0))
    faults.append(Fault(rng.uniform(0.05, 0.25) * span, "huge", 500 if quick else HUGE, 15 if quick else 180))
    return sorted(faults, key=lambda f: f.at)


def quiet_window(start: float, seconds: float) -> tuple[float, float] | None:
    """Quiet hours for team2 that open and close during the run, on whole minutes (a schedule's resolution): from
    about a third of the run, for a tenth of it (at least a minute). None for runs too short to hold one."""
    if seconds < 240:
        return None
    opens = (int(start + seconds / 3) // 60 + 1) * 60
    return float(opens), float(opens + 60 * max(1, round(seconds / 600)))


@dataclass
class Happened:
    """The faults as they happened (wall-clock times), for the ledger's causes and recovery times."""

    start: float
    kills: list[float] = field(default_factory=list)  # a replica killed
    outages: list[tuple[float, float]] = field(default_factory=list)  # PostgreSQL away (from, to)
    ends: list[tuple[str, float]] = field(default_factory=list)  # (fault, when it ended)
    resets: list[float] = field(default_factory=list)  # the fake Bot API took a message, then reset its connection
    quiet: tuple[float, float] | None = None  # team2's quiet hours (from, to)

    def both_away(self, first: float, then: float) -> bool:
        """Both moments fell in one PostgreSQL outage (give or take Alertmanager's flush and retry)."""
        return any(a - 5 <= first and then <= b + 10 for a, b in self.outages)

    def duplicate_cause(self, first: float, again: float) -> str | None:
        """Why a message could legitimately be sent twice (at least once, never lost): its replica was killed
        after the provider took it and before the send was recorded, or the store was away then, so the send
        could not be recorded and the message was taken over when its lease ran out."""
        # the worker records a send within moments of the provider's answer
        if any(first - 1 <= k <= first + RECORD_WITHIN for k in self.kills):
            return "replica killed before it recorded the send"
        if any(a <= first + RECORD_WITHIN and b >= first - 1 for a, b in self.outages):
            return "PostgreSQL away when the send was to be recorded"
        if any(abs(r - first) <= 1 for r in self.resets):
            return "Telegram took it, then the connection was reset before its answer"
        return None

    def deferred(self, team: str, at: float) -> bool:
        """Whether team2's quiet hours held a change made at `at` back (give or take a flush)."""
        return team == "team2" and self.quiet is not None and self.quiet[0] - 5 <= at <= self.quiet[1]
