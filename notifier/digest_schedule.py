"""When an email digest is due: a 5-field cron expression, or every N minutes or hours aligned to local midnight
(pure; the settings check a schedule with it when they are read)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from notifier.configtypes import parse_duration

_FIELDS = ("minute", "hour", "day", "month", "weekday")
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


def _parse_field(text: str, lo: int, hi: int, name: str) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, s = part.split("/", 1)
            step = int(s)
            if step < 1:
                raise ValueError(f"{name}: step must be at least 1")
        if part == "*":
            a, b = lo, hi
        elif "-" in part:
            a, b = (int(x) for x in part.split("-", 1))
        else:
            a = b = int(part)
        if name == "weekday":  # cron's Sunday may be 7
            a, b = (0 if a == 7 else a), (0 if b == 7 and a != 0 else b)
        if not (lo <= a <= hi and lo <= b <= hi and a <= b):
            raise ValueError(f"{name}: {part!r} is outside {lo}-{hi}")
        out.update(range(a, b + 1, step))
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class DigestSchedule:
    """When a digest is due: a 5-field cron expression, or every N minutes/hours aligned to local midnight."""

    zone: ZoneInfo
    every: float | None = None
    cron: tuple[frozenset[int], ...] | None = None

    @classmethod
    def parse(cls, schedule: str, timezone: str) -> DigestSchedule:
        zone = ZoneInfo(timezone)
        text = schedule.strip()
        if text.startswith("every "):
            every = float(parse_duration(text[6:]))
            if every < 60:
                raise ValueError("schedule: digests at most once a minute")
            return cls(zone, every=every)
        parts = text.split()
        if len(parts) != 5:
            raise ValueError("schedule: expected 'every 1h' or a cron expression such as '0 8 * * *'")
        try:
            fields = tuple(_parse_field(p, lo, hi, n) for p, (lo, hi), n in zip(parts, _RANGES, _FIELDS, strict=True))
        except ValueError as exc:
            raise ValueError(f"schedule: {exc}") from None
        return cls(zone, cron=fields)

    def _matches(self, local: datetime) -> bool:
        assert self.cron is not None
        minute, hour, day, month, weekday = self.cron
        return (
            local.minute in minute
            and local.hour in hour
            and local.day in day
            and local.month in month
            and (local.weekday() + 1) % 7 in weekday
        )

    def latest_tick(self, now: float) -> float:
        """The newest tick at or before `now` (unix seconds)."""
        if self.every is not None:
            local = datetime.fromtimestamp(now, self.zone)
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
            since = now - midnight.timestamp()
            return midnight.timestamp() + (since // self.every) * self.every
        t = datetime.fromtimestamp(now, UTC).replace(second=0, microsecond=0)
        for _ in range(366 * 24 * 60):
            if self._matches(t.astimezone(self.zone)):
                return t.timestamp()
            t -= timedelta(minutes=1)
        raise ValueError("the cron expression never matches")
