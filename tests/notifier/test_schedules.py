"""Quiet-hours schedules: weekdays, overnight windows, holidays, and the 2026 daylight-saving nights (pure)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from notifier.configtypes import parse_weekdays
from notifier.schedules import Schedule
from notifier.settings import ScheduleSettings, TimeRange

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def quiet(s: Schedule, t: float) -> bool:
    return s.active_window(t) is not None


def ts(zone: ZoneInfo, *args: int, fold: int = 0) -> float:
    year, month, day, hour, minute, second = (*args, 0, 0, 0)[:6]
    return datetime(year, month, day, hour, minute, second, tzinfo=zone, fold=fold).timestamp()


def night(location: str, **kw: object) -> Schedule:
    return Schedule.from_settings(
        ScheduleSettings(location=location, times=[TimeRange(start="22:00", end="07:00")], **kw)  # type: ignore[arg-type]
    )


def test_weekday_ranges() -> None:
    assert parse_weekdays("monday:friday") == {0, 1, 2, 3, 4}
    assert parse_weekdays("saturday:monday") == {5, 6, 0}
    assert parse_weekdays("Sunday") == {6}
    with pytest.raises(ValueError):
        parse_weekdays("funday")


def test_overnight_window_start_inclusive_end_exclusive() -> None:
    s = night("Europe/Berlin")
    assert not quiet(s, ts(BERLIN, 2026, 11, 26, 21, 59, 59))
    assert quiet(s, ts(BERLIN, 2026, 11, 26, 22, 0))
    assert quiet(s, ts(BERLIN, 2026, 11, 27, 3, 0))
    assert quiet(s, ts(BERLIN, 2026, 11, 27, 6, 59, 59))
    assert not quiet(s, ts(BERLIN, 2026, 11, 27, 7, 0))
    assert s.active_window(ts(BERLIN, 2026, 11, 27, 1, 0)) == (
        ts(BERLIN, 2026, 11, 26, 22, 0),
        ts(BERLIN, 2026, 11, 27, 7, 0),
    )


def test_an_overnight_window_belongs_to_the_day_it_starts() -> None:
    s = night("Europe/Berlin", weekdays=["friday"])  # Friday night into Saturday morning only
    assert quiet(s, ts(BERLIN, 2026, 11, 27, 23, 0))  # Friday 23:00
    assert quiet(s, ts(BERLIN, 2026, 11, 28, 6, 0))  # Saturday 06:00, same night
    assert not quiet(s, ts(BERLIN, 2026, 11, 26, 23, 0))  # Thursday night
    assert not quiet(s, ts(BERLIN, 2026, 11, 28, 23, 0))  # Saturday night


def test_holiday_dates() -> None:
    s = Schedule.from_settings(ScheduleSettings(location="Europe/Berlin", dates=["2026-12-25"]))
    assert quiet(s, ts(BERLIN, 2026, 12, 25, 12, 0))
    assert not quiet(s, ts(BERLIN, 2026, 12, 24, 12, 0))


@pytest.mark.parametrize(
    ("zone", "night_of", "hours"),
    [
        (BERLIN, (2026, 3, 28), 8),  # spring forward: 02:00 -> 03:00 on March 29
        (BERLIN, (2026, 10, 24), 10),  # fall back: 03:00 -> 02:00 on October 25
        (NEW_YORK, (2026, 3, 7), 8),  # spring forward on March 8
        (NEW_YORK, (2026, 10, 31), 10),  # fall back on November 1
        (BERLIN, (2026, 11, 26), 9),  # an ordinary night
    ],
)
def test_daylight_saving_nights_end_when_the_wall_clock_says_07_00(
    zone: ZoneInfo, night_of: tuple[int, int, int], hours: int
) -> None:
    s = night(zone.key)
    start = ts(zone, *night_of, 22, 0)
    window = s.active_window(start + 3600)
    assert window is not None
    assert window[0] == start
    end_local = datetime.fromtimestamp(window[1], zone)
    assert (end_local.hour, end_local.minute) == (7, 0)
    assert window[1] - window[0] == hours * 3600
    # every instant of the night is quiet, and the first instant after is not
    for t in range(int(window[0]), int(window[1]), 600):
        assert quiet(s, t)
    assert not quiet(s, window[1])


def test_a_boundary_inside_the_spring_forward_gap_moves_to_the_end_of_the_gap() -> None:
    s = Schedule.from_settings(
        ScheduleSettings(location="Europe/Berlin", times=[TimeRange(start="02:30", end="05:00")])
    )
    w = s.active_window(ts(BERLIN, 2026, 3, 29, 3, 30))
    assert w is not None
    assert w[0] == ts(BERLIN, 2026, 3, 29, 3, 0)  # 02:30 does not exist that day; the window starts at 03:00
    assert not quiet(s, ts(BERLIN, 2026, 3, 29, 1, 59))


def test_the_repeated_hour_of_fall_back_is_quiet_both_times() -> None:
    s = Schedule.from_settings(
        ScheduleSettings(location="Europe/Berlin", times=[TimeRange(start="01:00", end="04:00")])
    )
    assert quiet(s, ts(BERLIN, 2026, 10, 25, 2, 30, fold=0))
    assert quiet(s, ts(BERLIN, 2026, 10, 25, 2, 30, fold=1))
    w = s.active_window(ts(BERLIN, 2026, 10, 25, 2, 30, fold=1))
    assert w is not None and w[1] - w[0] == 4 * 3600
