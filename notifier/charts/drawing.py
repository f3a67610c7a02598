"""What a chart shows, as plain values: made in the notifier, drawn in the drawing process (render.py), so it
crosses the process boundary as it is."""

from __future__ import annotations

from dataclasses import dataclass

from notifier.charts.prometheus import Series


@dataclass(frozen=True, slots=True)
class Drawing:
    title: str
    series: list[Series]
    threshold: float | None
    op: str | None
    severity: str
    zone: str
    start: float
    end: float
    note: str = ""  # a line under the title (the expression as drawn, series left out)


def tick_every(span: float) -> float:
    """A round step between time labels that gives five to ten of them."""
    for step in (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400):
        if span / step <= 8:
            return float(step)
    return 86400.0


def format_span(seconds: float) -> str:
    """`1h`, `90m`: how far back a chart reaches."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    return f"{seconds / 60:g}m"
