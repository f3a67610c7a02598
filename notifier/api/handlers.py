"""HTTP handlers: the webhook intake, health and metrics, and the operator's view of the outbox."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from notifier.alertmanager import PayloadError, decode_payload
from notifier.api.auth import REFUSALS_COUNTED, require_credentials
from notifier.api.refusals import RefusalLog
from notifier.domain import DeliveryState, SuppressReason, WebhookOutcome
from notifier.errors import SenderGone, StoreUnavailable
from notifier.runtime import Runtime
from notifier.store import repository as repo
from notifier.store import timeline
from notifier.store.ids import GROUP_HASH, ROW_ID
from notifier.views import delivery_view, timeline_view

log = logging.getLogger("notifier.api")
JSON = "application/json"


def error(status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> Response[Any]:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return Response(content=body, status_code=status, media_type=JSON, headers=headers)


async def _read_payload(rt: Runtime, request: Request[Any, Any, Any]) -> tuple[Any, bytes] | Response[Any]:
    limit = rt.settings.server.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return error(413, f"the body is larger than server.max_body_bytes ({limit} bytes)")
    body = await request.body()
    if len(body) > limit:
        return error(413, f"the body is larger than server.max_body_bytes ({limit} bytes)")
    try:
        return decode_payload(body), body
    except PayloadError as exc:
        return error(400, exc.message, exc.field)


class _Waiting:
    """Whether the sender of a webhook is still waiting for the answer. Alertmanager gives up on a request at its
    flush's deadline (seconds at the least: a group interval) and closes the connection; the ASGI server then
    reports the disconnect on `receive`. The connection is watched only once the webhook has waited WATCH_AFTER
    for the store: a watch is a task of its own, dearer than the whole store write of a webhook committed in
    milliseconds, and a disconnect that came before the watch started is reported to it at once."""

    __slots__ = ("_gone", "_request", "_timer", "_watch")
    WATCH_AFTER = 1.0  # seconds

    def __init__(self, request: Request[Any, Any, Any]) -> None:
        self._gone = False
        self._request = request
        self._watch: asyncio.Future[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(self.WATCH_AFTER, self._start)

    def _start(self) -> None:
        self._watch = asyncio.ensure_future(self._wait())

    async def _wait(self) -> None:
        try:
            message = await self._request.receive()
        except OSError:  # the server could not read from the connection: gone all the same
            self._gone = True
            return
        self._gone = message["type"] == "http.disconnect"

    def gone(self) -> bool:
        return self._gone

    def stop(self) -> None:
        self._timer.cancel()
        if self._watch is not None:
            self._watch.cancel()


def _log_refusal(state: State, request: Request[Any, Any, Any], response: Response[Any]) -> None:
    refusals: RefusalLog = state.refusals
    body = response.content if isinstance(response.content, dict) else {}
    peer = request.client.host if request.client else ""
    refusals.refused(response.status_code or 0, str(body.get("error", "")), body.get("field"), peer)


@post("/webhook/alertmanager", status_code=202, guards=[require_credentials], opt={REFUSALS_COUNTED: True})
async def webhook(request: Request[Any, Any, Any], state: State, rt: NamedDependency[Runtime]) -> Response[Any]:
    started = time.perf_counter()
    outcome = WebhookOutcome.INVALID
    try:
        read = await _read_payload(rt, request)
        if isinstance(read, Response):
            outcome = WebhookOutcome.TOO_LARGE if read.status_code == 413 else WebhookOutcome.INVALID
            _log_refusal(state, request, read)
            return read
        payload, body = read
        job = rt.intake.prepare(payload, body)
        del payload, read  # not kept alive while the webhook waits for its commit: see IntakeJob
        waiting = _Waiting(request)
        job.sender_gone = waiting.gone
        try:
            result = await rt.store.run_batched(rt.intake_batch, job)
        except SenderGone as exc:
            outcome = WebhookOutcome.ABANDONED
            return error(503, str(exc))  # nobody reads it
        except StoreUnavailable as exc:
            outcome = WebhookOutcome.UNAVAILABLE
            log.error("webhook not stored, answering 503 so that Alertmanager retries: %s", exc)
            return error(
                503, "the notifier cannot store notifications right now; retry later", headers={"Retry-After": "5"}
            )
        finally:
            waiting.stop()
        if result.duplicate:
            outcome = WebhookOutcome.DUPLICATE
            rt.metrics.suppressed(SuppressReason.DUPLICATE)
        else:
            outcome = WebhookOutcome.ACCEPTED
            rt.metrics.alerts_received(job.counts)
        return Response(
            content={
                "status": "accepted",
                "notification_id": result.notification_id,
                "alerts": result.alerts,
                "duplicate": result.duplicate,
                "queued": result.queued,
                "receivers": result.receivers,
                "suppressed": result.suppressed,
            },
            status_code=202,
            media_type=JSON,
        )
    finally:
        rt.metrics.webhook(outcome, time.perf_counter() - started)


@post("/webhook/alertmanager/validate", status_code=200, guards=[require_credentials])
async def validate_only(request: Request[Any, Any, Any], rt: NamedDependency[Runtime]) -> Response[Any]:
    """Validates a payload exactly as the webhook does, stores nothing: for checking a sender's setup."""
    read = await _read_payload(rt, request)
    if isinstance(read, Response):
        return read
    payload, _ = read
    routed = sorted({m.receiver for m in rt.router.match({**payload.commonLabels, **payload.groupLabels})})
    return Response(
        content={"status": "valid", "alerts": len(payload.alerts), "receivers": routed},
        status_code=200,
        media_type=JSON,
    )


@get("/healthz")
async def healthz() -> Response[Any]:
    return Response(content={"status": "ok"}, media_type=JSON)


@get("/readyz")
async def readyz(state: State, rt: NamedDependency[Runtime]) -> Response[Any]:
    """Ready or not, and which part is not: the reasons go to the log, never to whoever can reach the port."""
    problems: list[str] = []
    reasons: list[str] = []
    try:
        await rt.store.ping()
    except StoreUnavailable as exc:
        problems.append("store")
        reasons.append(f"store: {exc}")
    if not rt.worker.running:
        problems.append("worker")
        reasons.append("worker: not running")
    if reasons != state.get("unready", []):  # logged once per change, not on every poll
        if reasons:
            log.warning("not ready: %s", "; ".join(reasons))
        else:
            log.info("ready again")
        state["unready"] = reasons
    if problems:
        return Response(content={"status": "unavailable", "problems": problems}, status_code=503, media_type=JSON)
    return Response(content={"status": "ready"}, media_type=JSON)


@get("/metrics")
async def metrics(rt: NamedDependency[Runtime]) -> Response[bytes]:
    return Response(content=generate_latest(rt.registry), media_type=CONTENT_TYPE_LATEST)


@get("/api/v1/deliveries", guards=[require_credentials])
async def list_deliveries(request: Request[Any, Any, Any], state: State, rt: NamedDependency[Runtime]) -> Response[Any]:
    st = request.query_params.get("state")
    if st is not None and st not in {s.value for s in DeliveryState}:
        return error(400, "state must be one of pending, sending, sent, dead", "state")
    raw_limit = request.query_params.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        return error(400, "limit must be a whole number from 1 to 1000", "limit")
    before = request.query_params.get("before")
    if before is not None and not ROW_ID.fullmatch(before):
        return error(400, "before must be a delivery id (26 letters and digits)", "before")
    try:
        async with rt.store.begin(readonly=True) as conn:
            rows = await repo.list_deliveries(conn, st, int(raw_limit), before)
    except StoreUnavailable:
        return error(503, "the store is unavailable")
    return Response(content={"deliveries": [delivery_view(r) for r in rows]}, media_type=JSON)


@post("/api/v1/deliveries/{delivery_id:str}/retry", status_code=202, guards=[require_credentials])
async def retry_delivery(request: Request[Any, Any, Any], rt: NamedDependency[Runtime]) -> Response[Any]:
    delivery_id = str(request.path_params["delivery_id"])
    if not ROW_ID.fullmatch(delivery_id):
        return error(404, "no such delivery: a delivery id is 26 letters and digits")
    now = rt.clock.now()
    try:
        before = await rt.store.run_in_transaction(lambda conn: repo.retry_dead(conn, delivery_id, now))
        async with rt.store.begin(readonly=True) as conn:
            row = await repo.get_delivery(conn, delivery_id)
    except StoreUnavailable:
        return error(503, "the store is unavailable")
    if before == "missing" or row is None:
        return error(404, f"no delivery {delivery_id}")
    if before != DeliveryState.DEAD:
        return error(409, f"delivery {delivery_id} is {before}; only dead deliveries can be retried")
    rt.worker.wake()
    return Response(content={"status": "retrying", "delivery": delivery_view(row)}, status_code=202, media_type=JSON)


@get("/api/v1/groups/{group_hash:str}/timeline", guards=[require_credentials])
async def group_timeline(request: Request[Any, Any, Any], rt: NamedDependency[Runtime]) -> Response[Any]:
    """A group's timeline as JSON: every notification, decision, attempt and action, and why."""
    group = str(request.path_params["group_hash"])
    if not GROUP_HASH.fullmatch(group):
        return error(404, "no such group: a group's id is 64 hexadecimal digits")
    try:
        async with rt.store.begin(readonly=True) as conn:
            events = await timeline.group_events(conn, group)
    except StoreUnavailable:
        return error(503, "the store is unavailable")
    if not events:
        return error(404, f"nothing recorded for group {group}")
    return Response(content=timeline_view(group, events), media_type=JSON)
