"""The web view's pages. Every page but the login needs a session; every form posts its CSRF token. The pages only
read the store, except Retry, which does what `POST /api/v1/deliveries/{id}/retry` does."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.response import Redirect, Template
from sqlalchemy.engine import Connection

from notifier.channels.registry import PLUGINS, renderer_for
from notifier.domain import ChangeRecord, Delivery, DeliveryState, EventKind, GroupActions, MessageKind, TimelineEvent
from notifier.errors import StoreUnavailable
from notifier.messages import build_message
from notifier.redaction import redact
from notifier.settings import Settings
from notifier.store import actions as sa
from notifier.store import escalations, new_id, watchdogs
from notifier.store import repository as repo
from notifier.store import timeline as tl
from notifier.store.ids import ROW_ID
from notifier.templates.context import format_duration
from notifier.ui.auth import COOKIE, Session
from notifier.ui.charts import firing_now
from notifier.ui.view import HTML, View, off, refused, same_origin

log = logging.getLogger("notifier.ui")
SEARCH_WINDOWS = {"1h": 3600.0, "6h": 6 * 3600.0, "24h": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}


def _when(t: float | None, zone: str) -> str:
    if t is None:
        return ""
    return datetime.fromtimestamp(t, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")


# -- login ------------------------------------------------------------------------------------------------------------


@get("/ui/login", media_type=HTML)
async def login_page(view: NamedDependency[View]) -> Template | Response[Any]:
    if view.sessions is None:
        return off()
    return Template(template_name="login.html.j2", context={"error": ""}, media_type=HTML)


@post("/ui/login", media_type=HTML, status_code=200)
async def login(request: Request[Any, Any, Any], view: NamedDependency[View]) -> Template | Redirect | Response[Any]:
    sessions = view.sessions
    ui = view.settings.ui
    if sessions is None or ui is None:
        return off()
    if not same_origin(request):
        return refused(403, "This form did not come from the notifier's page.")
    form = dict(await request.form())
    name, password = str(form.get("user", ""))[:128], str(form.get("password", ""))[:1024]
    address = request.client.host if request.client else ""
    now = view.clock.now()
    wait = sessions.throttle.wait(name, address, now)
    if wait > 0:
        log.warning("web view: login as %r from %s refused: too many failed logins", name[:64], address)
        context = {"error": f"Too many failed logins: try again in {format_duration(wait)}."}
        return Template(template_name="login.html.j2", context=context, media_type=HTML, status_code=429)
    user = next((u for u in ui.users if u.name == name), None)
    if not await sessions.check(password, str(user.password_hash) if user is not None else None) or user is None:
        sessions.throttle.failed(name, address, now)
        log.warning("web view: failed login as %r from %s", name[:64], address)
        context = {"error": "Wrong name or password."}
        return Template(template_name="login.html.j2", context=context, media_type=HTML, status_code=401)
    sessions.throttle.succeeded(name)
    cookie = await sessions.issue(user.name, now)
    log.info("web view: %s logged in", user.name)
    return Redirect(
        "/ui",
        status_code=303,
        cookies=[
            Cookie(
                key=COOKIE,
                value=cookie,
                httponly=True,
                samesite="strict",
                path="/ui",
                max_age=int(ui.session_lifetime),
                secure=request.url.scheme == "https",
            )
        ],
    )


@post("/ui/logout", status_code=303)
async def logout(request: Request[Any, Any, Any], view: NamedDependency[View]) -> Response[Any]:
    form = dict(await request.form())
    _session, answer = await view.form_ok(request, form)
    if answer is not None:
        return answer
    sessions = view.sessions
    assert sessions is not None
    await sessions.end(request.cookies.get(COOKIE, ""))
    response: Response[Any] = Redirect("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


# -- now --------------------------------------------------------------------------------------------------------------


@get("/ui", media_type=HTML)
async def overview(request: Request[Any, Any, Any], view: NamedDependency[View]) -> Template | Response[Any]:
    session = await view.viewer(request)
    if not isinstance(session, Session):
        return session
    now = view.clock.now()
    zone = view.zone
    try:
        async with view.store.begin(readonly=True) as conn:
            groups = await sa.firing_groups(conn, 200)
            hashes = [g.group_hash for g in groups]
            actions = await sa.read_group_actions(conn, hashes, now) if hashes else {}
            waiting = await repo.list_deliveries(conn, DeliveryState.PENDING.value, 100)
            waiting += await repo.list_deliveries(conn, DeliveryState.SENDING.value, 100)
            _waiting, dead, last_sent = await sa.outbox_status(conn)
            errors = await repo.last_errors(conn)
            sources = await watchdogs.sources(conn) if view.settings.watchdog is not None else []
    except StoreUnavailable:
        return refused(503, "The store is unavailable; the page comes back when it answers.")
    rows = [
        {
            "hash": g.group_hash,
            "name": g.labels.get("alertname", "") or g.group_key,
            "labels": ", ".join(f"{k}={v}" for k, v in sorted(g.labels.items()) if k not in ("alertname", "severity")),
            "severity": g.severity.value,
            "firing": g.firing,
            "age": format_duration(now - (g.firing_since or g.updated_at)),
            "receivers": ", ".join(g.receivers),
            "acked": (actions.get(g.group_hash) or GroupActions()).acked_by,
            "silenced": (actions.get(g.group_hash) or GroupActions()).silenced_until,
        }
        for g in groups
    ]
    channels = sorted(set(last_sent) | set(errors) | {c for c in PLUGINS if any(d.channel == c for d in waiting)})
    health = [
        {
            "channel": c,
            "last_sent": _when(last_sent.get(c), zone),
            "ago": format_duration(now - last_sent[c]) if c in last_sent else "",
            "error": errors.get(c, ("", 0.0))[0],
            "error_at": _when(errors[c][1], zone) if c in errors else "",
        }
        for c in channels
    ]
    waits = [
        {
            "id": d.id,
            "target": d.target,
            "group": d.group_hash,
            "name": _alertname(d.group_key),
            "state": d.state.value,
            "due": _when(d.next_attempt_at, zone),
            "attempts": d.attempts,
            "why": _why_waiting(d, now),
        }
        for d in sorted(waiting, key=lambda d: d.next_attempt_at)
    ]
    watchdog = [
        {"name": w.name, "missing": w.state is watchdogs.SourceState.MISSING, "seen": _when(w.last_seen, zone)}
        for w in sources
    ]
    return view.page(
        "overview.html.j2", session, groups=rows, waiting=waits, dead=dead, health=health, watchdog=watchdog
    )


def _alertname(group_key: str) -> str:
    m = re.search(r'alertname="([^"]*)"', group_key)
    return m.group(1) if m else ("(digest)" if group_key.startswith("digest:") else group_key[:60])


def _why_waiting(d: Delivery, now: float) -> str:
    if d.state is DeliveryState.SENDING:
        return "being sent"
    if d.next_attempt_at > now and d.attempts == 0:
        return f"held for {format_duration(d.next_attempt_at - now)} (quiet hours or the rate limit)"
    if d.last_error:
        return f"retry {d.attempts + 1} in {format_duration(max(0.0, d.next_attempt_at - now))}: {redact(d.last_error)}"
    return "due now"


# -- a group's timeline -----------------------------------------------------------------------------------------------


@get("/ui/groups/{group_hash:str}", media_type=HTML)
async def group_page(request: Request[Any, Any, Any], view: NamedDependency[View]) -> Template | Response[Any]:
    looking = await view.group_viewer(request)
    if not isinstance(looking, tuple):
        return looking
    session, group = looking
    zone = view.zone
    try:
        async with view.store.begin(readonly=True) as conn:
            events = await tl.group_events(conn, group)
            chains = (await escalations.chains_of(conn, [group])).get(group, [])
            ids = sorted({e.delivery_id for e in events if e.delivery_id and e.outcome in ("sent", "dead")})
            sent, payloads = await conn.run_sync(lambda c: _sent_with_bodies(c, ids))
            chart = view.charter is not None and await firing_now(conn, events) is not None
    except StoreUnavailable:
        return refused(503, "The store is unavailable; the page comes back when it answers.")
    if not events:
        return refused(404, f"Nothing recorded for group {group}.")
    rows = [
        {
            "at": _when(e.at, zone),
            "kind": e.kind.value,
            "outcome": e.outcome,
            "subject": e.subject,
            "text": redact(e.text),
            "delivery": e.delivery_id or "",
        }
        for e in events
    ]
    alerts = [d for d in sent if d.kind is MessageKind.ALERT]
    messages = [_as_sent(view.settings, d, payloads.get(d.notification_id)) for d in alerts]
    return view.page(
        "group.html.j2",
        session,
        group=group,
        group_key=events[-1].group_key,
        name=_alertname(events[-1].group_key),
        events=rows,
        chains=[_chain(c, zone) for c in chains],
        messages=[m for m in messages if m is not None],
        chart=chart,
    )


def _chain(c: escalations.Chain, zone: str) -> dict[str, str]:
    """An escalation chain as the group's page shows it."""
    if c.state is escalations.ChainState.RUNNING and c.due_at is not None:
        now = f"step {c.step + 1} ({', '.join(c.steps[c.step].receivers)}) due at {_when(c.due_at, zone)}"
    elif c.state is escalations.ChainState.ARMED:
        now = "waits for the group's first message to the route's receivers to be sent"
    else:
        now = c.ended or c.state.value
    return {"route": c.route_path, "state": c.state.value, "now": now, "paged": ", ".join(c.paged) or "nobody yet"}


def _sent_with_bodies(conn: Connection, ids: list[str]) -> tuple[list[Delivery], dict[str, bytes | None]]:
    sent = repo.get_deliveries(conn, ids)
    return sent, repo.read_bodies(conn, {d.notification_id for d in sent})


def _as_sent(settings: Settings, d: Delivery, body: bytes | None) -> dict[str, Any] | None:
    """A message as its channel showed it, rendered again from what the outbox kept (the body and the change it
    told), at the time it was sent: its parts as the channel's plug-in shows them."""
    if body is None:
        return None
    try:
        receiver = settings.receiver(d.receiver)
        message = build_message(d, ChangeRecord.decode(d.change), body, receiver.send_resolved, None)
        parts = PLUGINS[d.channel].show(renderer_for(receiver), message, d.sent_at or d.updated_at)
    except Exception as exc:  # a message from an older config: say so rather than fail the page
        return {"target": d.target, "channel": d.channel, "id": d.id, "error": f"cannot be shown again: {exc}"}
    return {"target": d.target, "channel": d.channel, "id": d.id, "state": d.state.value, "error": "", "parts": parts}


# -- dead letters and search ------------------------------------------------------------------------------------------


@get("/ui/dead", media_type=HTML)
async def dead_page(request: Request[Any, Any, Any], view: NamedDependency[View]) -> Template | Response[Any]:
    session = await view.viewer(request)
    if not isinstance(session, Session):
        return session
    zone = view.zone
    async with view.store.begin(readonly=True) as conn:
        dead = await repo.list_deliveries(conn, DeliveryState.DEAD.value, 500)
    rows = [
        {
            "id": d.id,
            "target": d.target,
            "group": d.group_hash,
            "name": _alertname(d.group_key),
            "when": _when(d.updated_at, zone),
            "attempts": d.attempts,
            "error": redact(d.last_error or ""),
        }
        for d in dead
    ]
    done = request.query_params.get("done", "")
    return view.page("dead.html.j2", session, dead=rows, done=done if done.isdigit() else "")


@post("/ui/dead/retry", status_code=303)
async def retry_dead(request: Request[Any, Any, Any], view: NamedDependency[View]) -> Response[Any]:
    form = dict(await request.form())
    session, answer = await view.form_ok(request, form)
    if answer is not None or session is None:
        return answer or off()
    now = view.clock.now()
    wanted = str(form.get("id", ""))
    if wanted != "all" and not ROW_ID.fullmatch(wanted):
        return refused(400, "id: expected a delivery id (26 letters and digits) or all")
    async with view.store.begin(readonly=True) as conn:
        ids = (
            [d.id for d in await repo.list_deliveries(conn, DeliveryState.DEAD.value, 1000)]
            if wanted == "all"
            else [wanted]
        )
    retried = 0
    for delivery_id in ids:
        retried += await _retry(view, delivery_id, now, session.user)
    view.wake_worker()
    log.info("web view: %s retried %d dead letters", session.user, retried)
    return Redirect(f"/ui/dead?done={retried}", status_code=303)


async def _retry(view: View, delivery_id: str, now: float, who: str) -> bool:
    """A dead letter pending again, and a line in its group's timeline that says who did it."""
    record_it = view.settings.storage.timeline

    def write(conn: Connection) -> bool:
        d = repo.get_delivery_sync(conn, delivery_id)
        if repo.retry_dead(conn, delivery_id, now) != DeliveryState.DEAD:
            return False
        if record_it and d is not None:
            tl.record(
                conn,
                [
                    TimelineEvent(
                        id=new_id(),
                        at=now,
                        group_hash=d.group_hash,
                        group_key=d.group_key,
                        kind=EventKind.ACTION,
                        subject=who,
                        outcome="retry",
                        text=f"{who} retried the dead letter to {d.target} from the web view",
                        delivery_id=d.id,
                    )
                ],
            )
        return True

    retried: bool = await view.store.run_in_transaction(write)
    return retried


@get("/ui/search", media_type=HTML)
async def search_page(request: Request[Any, Any, Any], view: NamedDependency[View]) -> Template | Response[Any]:
    session = await view.viewer(request)
    if not isinstance(session, Session):
        return session
    text = request.query_params.get("q", "").strip()[:200]
    window = request.query_params.get("since", "24h")
    since = view.clock.now() - SEARCH_WINDOWS.get(window, 86400.0)
    async with view.store.begin(readonly=True) as conn:
        found = await tl.groups_like(conn, text, since, limit=100)
    zone = view.zone
    rows = [{"hash": h, "key": k, "name": _alertname(k), "last": _when(at, zone), "events": n} for h, k, at, n in found]
    return view.page("search.html.j2", session, q=text, since=window, windows=list(SEARCH_WINDOWS), groups=rows)


PAGES = [login_page, login, logout, overview, group_page, dead_page, retry_dead, search_page]
