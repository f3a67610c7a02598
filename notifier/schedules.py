"""Quiet-hours windows: weekdays, times of day and dates in an IANA time zone (pure; DST-aware).

`times` are start-inclusive, end-exclusive wall-clock times in the schedule's zone. A window whose end is not after
its start runs overnight (22:00-07:00 covers 22:00 until 07:00 the next morning, and belongs to the weekday on which
it started). Wall-clock times that do not exist (spring forward) or occur twice (fall back) are judged by the local
time actually shown on the clock, so a window ends when the clock on the wall says it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from notifier.configtypes import parse_weekdays
from notifier.settings import ScheduleSettings


def _hm(text: str) -> time | None:
    """'24:00' is the end of the day, given as None."""
    h, m = (int(x) for x in text.split(":"))
    return None if h == 24 else time(h, m)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A compiled quiet-hours schedule."""

    zone: ZoneInfo
    weekdays: frozenset[int]
    ranges: tuple[tuple[time, time | None], ...]
    dates: frozenset[date]

    @classmethod
    def from_settings(cls, s: ScheduleSettings) -> Schedule:
        days: set[int] = set()
        for w in s.weekdays:
            days |= parse_weekdays(w)
        ranges = tuple((_hm(t.start) or time(0), _hm(t.end)) for t in s.times) or ((time(0), None),)
        return cls(ZoneInfo(s.location), frozenset(days), ranges, frozenset(date.fromisoformat(d) for d in s.dates))

    def _day_applies(self, d: date) -> bool:
        return d.weekday() in self.weekdays and (not self.dates or d in self.dates)

    def _windows_for_day(self, d: date) -> list[tuple[datetime, datetime]]:
        """The windows that start on local date d, as aware UTC datetimes."""
        if not self._day_applies(d):
            return []
        out = []
        for start, end in self.ranges:
            s_local = datetime.combine(d, start)
            if end is None:
                e_local = datetime.combine(d + timedelta(days=1), time(0))
            elif end <= start:
                e_local = datetime.combine(d + timedelta(days=1), end)
            else:
                e_local = datetime.combine(d, end)
            out.append((_local_to_utc(s_local, self.zone), _local_to_utc(e_local, self.zone)))
        return out

    def active_window(self, ts: float) -> tuple[float, float] | None:
        """The (start, end) of the window covering ts (unix seconds), or None outside every window."""
        now = datetime.fromtimestamp(ts, UTC)
        local_day = now.astimezone(self.zone).date()
        best: tuple[float, float] | None = None
        for d in (local_day - timedelta(days=1), local_day):
            for s, e in self._windows_for_day(d):
                if s <= now < e:
                    cand = (s.timestamp(), e.timestamp())
                    best = cand if best is None or cand[1] > best[1] else best
        if best is None:
            return None
        # windows that touch or overlap the current one extend it (e.g. 22:00-24:00 followed by 00:00-07:00)
        end = best[1]
        for _ in range(14):
            nxt = self.active_window_starting_at(end)
            if nxt is None:
                break
            end = nxt
        return best[0], end

    def active_window_starting_at(self, ts: float) -> float | None:
        at = datetime.fromtimestamp(ts, UTC)
        local_day = at.astimezone(self.zone).date()
        latest: float | None = None
        for d in (local_day - timedelta(days=1), local_day):
            for s, e in self._windows_for_day(d):
                if s <= at < e and e.timestamp() > ts:
                    latest = max(latest or 0.0, e.timestamp())
        return latest


def _local_to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """Wall-clock time in `zone` to UTC. A time the clock skips (spring forward) maps to the moment the clock jumps,
    i.e. the first wall-clock time after the gap; a repeated time (fall back) to its first occurrence."""

    def exists(t: datetime) -> bool:
        aware = t.replace(tzinfo=zone, fold=0)
        return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == t

    t = local
    for _ in range(24 * 60):  # gaps are an hour, rarely two; a minute step finds their end
        if exists(t):
            break
        t = (t + timedelta(minutes=1)).replace(second=0, microsecond=0)
    return t.replace(tzinfo=zone, fold=0).astimezone(UTC)
