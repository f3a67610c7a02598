"""The chart on a group's page: the series of what the group fires now, as its newest notification tells it, drawn
as a message's chart is (notifier/charts, with its cache). The page shows it only with `charts:` on and while the
group fires; the picture is served to a logged-in viewer like the page itself."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.charts import headline
from notifier.configtypes import DEFAULT_HIDDEN_LABELS
from notifier.domain import TimelineEvent
from notifier.errors import StoreUnavailable
from notifier.store import repository as repo
from notifier.store import timeline as tl
from notifier.ui.view import View, refused


class Firing(msgspec.Struct, frozen=True):
    """What the group fires now: its alerts as Alertmanager sent them, and the chart's title and colour."""

    alerts: list[dict[str, Any]]
    title: str
    severity: str


async def firing_now(conn: AsyncConnection, events: list[TimelineEvent]) -> Firing | None:
    """The group's firing alerts, from the newest notification its timeline names; None when nothing fires."""
    newest = max((e.notification_id for e in events if e.notification_id), default=None)  # ULIDs sort by time
    if newest is None:
        return None
    body = (await conn.run_sync(lambda c: repo.read_bodies(c, [newest]))).get(newest)
    if body is None:
        return None
    try:
        payload = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    alerts = [a for a in payload.get("alerts", []) if isinstance(a, dict) and a.get("status") == "firing"]
    if not alerts:
        return None
    title, severity = headline(payload)
    return Firing(alerts, title, severity)


@get("/ui/groups/{group_hash:str}/chart.png")
async def group_chart(request: Request[Any, Any, Any], view: NamedDependency[View]) -> Response[Any]:
    looking = await view.group_viewer(request)
    if not isinstance(looking, tuple):
        return looking
    _session, group = looking
    if view.charter is None:
        return refused(404, "Charts are off: give `charts:` in the config.")
    try:
        async with view.store.begin(readonly=True) as conn:
            firing = await firing_now(conn, await tl.group_events(conn, group))
    except StoreUnavailable:
        return refused(503, "The store is unavailable; the chart comes back when it answers.")
    if firing is None:
        return refused(404, "Nothing of this group fires now.")
    hidden = frozenset(DEFAULT_HIDDEN_LABELS)
    chart = await view.charter.draw(
        group, firing.alerts, firing.title, firing.severity, view.zone, view.clock.now(), hidden
    )
    if chart.png is None:
        return refused(404, f"No chart: {chart.reason}")
    return Response(content=chart.png, media_type="image/png")  # no-store, like every page (api/hygiene.py)
