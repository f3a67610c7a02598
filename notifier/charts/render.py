"""Drawing a chart: matplotlib's Agg backend into a PNG of about 800 x 450 pixels, with type large enough to read on
a phone. Pure and blocking: the caller runs it in a worker thread."""

from __future__ import annotations

import io
from datetime import datetime
from zoneinfo import ZoneInfo

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MultipleLocator

from notifier.charts.drawing import Drawing, format_span, tick_every
from notifier.charts.prometheus import Series

WIDTH, HEIGHT, DPI = 8.0, 4.5, 100  # inches at 100 dpi: 800 x 450 pixels
SEVERITY_COLOURS = {"critical": "#d32f2f", "warning": "#f57c00", "info": "#1976d2"}
SERIES_COLOURS = ["#1565c0", "#2e7d32", "#6a1b9a", "#00838f", "#4e342e", "#37474f"]
THRESHOLD_COLOUR = SEVERITY_COLOURS["critical"]


def legend_of(labels: dict[str, str], hidden: set[str]) -> str:
    shown = [f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__" and k not in hidden]
    text = ", ".join(shown) or labels.get("__name__", "value")
    return text if len(text) <= 60 else text[:59] + "…"


def render(d: Drawing, hidden: set[str] | None = None) -> bytes:
    zone = ZoneInfo(d.zone)
    colour = SEVERITY_COLOURS.get(d.severity, SEVERITY_COLOURS["warning"])
    fig = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, s in enumerate(d.series):
        label = legend_of(s.labels, hidden or set())
        ax.plot(s.times, s.values, color=SERIES_COLOURS[i % len(SERIES_COLOURS)], linewidth=2.5, label=label)
    if d.threshold is not None:
        ax.axhline(d.threshold, color=colour, linestyle="--", linewidth=2.5, label=f"alert when {d.op} {d.threshold:g}")
    ax.set_xlim(d.start, d.end)  # seconds since the epoch, labelled as the receiver's clock
    ax.xaxis.set_major_locator(MultipleLocator(tick_every(d.end - d.start)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: datetime.fromtimestamp(x, zone).strftime("%H:%M")))
    ax.tick_params(labelsize=13)
    ax.grid(True, alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.spines["left"].set_color(colour)
    ax.spines["left"].set_linewidth(3)
    fig.suptitle(d.title, fontsize=17, fontweight="bold", color=colour, x=0.02, ha="left")
    ax.set_title(d.note or f"last {format_span(d.end - d.start)} · {d.zone}", fontsize=12, loc="left", color="#555")
    if d.series or d.threshold is not None:
        ax.legend(fontsize=11, loc="upper left", framealpha=0.85)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def warm_up() -> int:
    """Draw a small chart once, so that the first real one does not pay for loading fonts and caches."""
    return len(render(Drawing("warm-up", [Series({}, [0.0, 60.0], [0.0, 1.0])], 0.5, ">", "info", "UTC", 0.0, 60.0)))
