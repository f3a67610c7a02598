"""Charts of an alert's own series (issue: the chart at a glance): for a firing group, the expression of its rule
from Prometheus over the last `charts.range`, drawn as a PNG (plan.py reads the expression, prometheus.py asks for
the series, render.py draws them). A chart never costs an alert: whatever fails (Prometheus away, a query refused,
no data, too slow) gives a Chart without a picture and the reason, which the caller records; the text message
never waits for it. A drawn chart is kept for a minute per group and state: the group's other targets, and a copy
or a repeat soon after, do not query again."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx

from notifier.charts.drawing import Drawing
from notifier.charts.plan import Plan, expression_of, plan
from notifier.charts.prometheus import ChartError, Series, query_range
from notifier.settings_access import ChartSettings

CACHED = 64  # charts kept, newest first
FRESH = 60.0  # seconds a drawn chart is reused: the group's other targets, a copy or a repeat soon after
POINTS = 240  # points per series over the range (15 s steps over an hour)
DRAWING_NICENESS = 19  # where the idle class is not to be had: the lowest priority os.nice gives


def _render(drawing: Drawing, hidden: set[str]) -> bytes:
    """In the drawing process: matplotlib is loaded there, never in the notifier's own."""
    from notifier.charts.render import render

    return render(drawing, hidden)


def _yield_to_the_notifier() -> None:
    """In the drawing process, at its start: it runs only when the processor has nothing else to do (Linux's idle
    scheduling class), so that on a busy machine a chart waits, not a webhook's answer or a text message, which
    take the processor from it the moment they wake. A chart that cannot get the processor within
    `charts.timeout` is skipped, and the timeline says so."""
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.nice(DRAWING_NICENESS)


def _warm_up() -> int:
    from notifier.charts.render import warm_up

    return warm_up()


class ChartOutcome(StrEnum):
    DRAWN = "drawn"
    CACHED = "cached"
    NO_EXPRESSION = "no_expression"  # no alert of the group links to its rule's expression
    NO_DATA = "no_data"
    FAILED = "failed"  # Prometheus away or refusing the query
    TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class Chart:
    outcome: ChartOutcome
    png: bytes | None = None
    reason: str = ""  # why there is no picture, or what the picture leaves out


def headline(payload: Mapping[str, Any]) -> tuple[str, str]:
    """A chart's title and severity, from a notification's group and common labels ("CRITICAL: CriticalDrawdown")."""
    labels = {**payload.get("commonLabels", {}), **payload.get("groupLabels", {})}
    severity = str(labels.get("severity", "warning")).lower()
    return f"{severity.upper()}: {labels.get('alertname', 'alert')}", severity


def matches(series: Series, labels: Mapping[str, str]) -> bool:
    """Whether a series is one of the alert's: every label both carry has the same value."""
    return all(labels[k] == v for k, v in series.labels.items() if k in labels and k != "__name__")


class Charter:
    """Draws charts for messages (see the module's docstring). Drawing runs in one worker process, started on the
    first chart: matplotlib's drawing is mostly Python, and in a thread of the notifier it would hold the
    interpreter a tenth of a second per chart while webhooks and text messages wait (bench/charts.py measures
    both)."""

    def __init__(self, settings: ChartSettings) -> None:
        self._settings = settings
        auth: Any = None
        headers = {}
        if settings.bearer_token is not None:
            headers["Authorization"] = f"Bearer {settings.bearer_token}"
        elif settings.basic_auth is not None:
            auth = httpx.BasicAuth(settings.basic_auth.username, str(settings.basic_auth.password))
        self._client = httpx.AsyncClient(timeout=float(settings.timeout), headers=headers, auth=auth)
        # spawned, not forked: a fork of a process with an event loop and threads copies their state half-done
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_yield_to_the_notifier
        )
        self._cache: OrderedDict[str, tuple[float, Chart]] = OrderedDict()  # key -> (drawn at, chart)

    def start(self) -> None:
        """Start the drawing process now, while the notifier starts, rather than with the first alert."""
        self._pool.submit(_warm_up)

    async def aclose(self) -> None:
        await self._client.aclose()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def draw(
        self,
        key: str,
        alerts: Sequence[Mapping[str, Any]],
        title: str,
        severity: str,
        zone: str,
        now: float,
        hidden: frozenset[str] = frozenset(),
    ) -> Chart:
        """The chart of a group's firing `alerts` (as Alertmanager sent them); `key` names the group, for the cache
        (with the alerts' states)."""
        key = f"{key}:" + ",".join(sorted(f"{a.get('fingerprint')}={a.get('status')}" for a in alerts))
        kept = self._cache.get(key)
        if kept is not None and now - kept[0] < FRESH:
            self._cache.move_to_end(key)
            return Chart(ChartOutcome.CACHED, kept[1].png, kept[1].reason)
        try:
            chart = await asyncio.wait_for(
                self._draw(alerts, title, severity, zone, now, hidden), timeout=float(self._settings.timeout)
            )
        except TimeoutError:
            return Chart(ChartOutcome.TIMEOUT, reason=f"not drawn within {float(self._settings.timeout):g}s")
        if chart.png is not None:
            self._cache[key] = (now, chart)
            while len(self._cache) > CACHED:
                self._cache.popitem(last=False)
        return chart

    async def _draw(
        self,
        alerts: Sequence[Mapping[str, Any]],
        title: str,
        severity: str,
        zone: str,
        now: float,
        hidden: frozenset[str],
    ) -> Chart:
        firing = [a for a in alerts if a.get("status") == "firing"]
        exprs = list(dict.fromkeys(e for a in firing if (e := expression_of(str(a.get("generatorURL") or "")))))
        if not exprs:
            return Chart(ChartOutcome.NO_EXPRESSION, reason="no alert links to its rule's expression")
        p: Plan = plan(exprs[0])
        span = float(self._settings.range)
        step = max(1.0, round(span / POINTS))
        try:
            found = await query_range(self._client, self._settings.prometheus_url, p.query, now - span, now, step)
        except ChartError as exc:
            return Chart(ChartOutcome.FAILED, reason=str(exc))
        mine = [s for s in found if any(matches(s, a.get("labels") or {}) for a in firing)] or found
        if not mine:
            return Chart(ChartOutcome.NO_DATA, reason=f"no data for {p.query} over the range")
        limit = self._settings.max_series
        notes = []
        if len(mine) > limit:
            notes.append(f"{limit} of {len(mine)} series")
        if p.threshold is None:
            notes.append(f"drawn as it is: {p.query}"[:90])
        if len(exprs) > 1:
            notes.append(f"1 of {len(exprs)} rules")
        drawing = Drawing(title, mine[:limit], p.threshold, p.op, severity, zone, now - span, now, " · ".join(notes))
        png = await asyncio.get_running_loop().run_in_executor(self._pool, _render, drawing, set(hidden))
        return Chart(ChartOutcome.DRAWN, png, " · ".join(notes))
