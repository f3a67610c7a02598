"""The chat's requests: Telegram's webhook (`actions.telegram.mode: webhook`), Slack's interactions and commands.
Each is checked for what makes it genuine (Telegram's secret token, Slack's signature) before anything is read."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency

from notifier.api.handlers import JSON, error
from notifier.runtime import Runtime

log = logging.getLogger("notifier.api")
MAX_CHAT_BODY = 256 * 1024


@post("/telegram/updates", status_code=200)
async def telegram_updates(request: Request[Any, Any, Any], rt: NamedDependency[Runtime]) -> Response[Any]:
    listener = rt.telegram_webhook
    if listener is None:
        return error(404, "Telegram updates are not taken by webhook here (actions.telegram.mode)")
    body = await request.body()
    if len(body) > MAX_CHAT_BODY:
        return error(413, "the body is too large for a Telegram update")
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        data = None
    secret = request.headers.get("x-telegram-bot-api-secret-token")
    if not isinstance(data, dict):
        return error(400, "expected a Telegram update (a JSON object)")
    if not listener.accept(data, secret):
        log.warning("Telegram update refused: wrong or missing secret token")
        return error(401, "wrong or missing X-Telegram-Bot-Api-Secret-Token")
    return Response(content={"ok": True}, media_type=JSON)


async def _slack_body(rt: Runtime, request: Request[Any, Any, Any]) -> tuple[bytes, Response[Any] | None]:
    slack = rt.slack_requests
    if slack is None:
        return b"", error(404, "Slack interactivity is not configured (actions.slack.signing_secret)")
    body = await request.body()
    if len(body) > MAX_CHAT_BODY:
        return body, error(413, "the body is too large for a Slack request")
    if not slack.genuine(body, request.headers):
        log.warning("Slack request refused: bad signature or stale timestamp")
        return body, error(401, "the request's signature or timestamp is not valid")
    if not await slack.first_sight(body):
        log.info("Slack request came again (retry %s); it was handled once", request.headers.get("x-slack-retry-num"))
        return body, Response(content=b"", status_code=200)
    return body, None


@post("/slack/actions", status_code=200)
async def slack_actions(request: Request[Any, Any, Any], rt: NamedDependency[Runtime]) -> Response[Any]:
    body, refused = await _slack_body(rt, request)
    if refused is not None:
        return refused
    assert rt.slack_requests is not None
    problem = rt.slack_requests.interaction(body)
    if problem is not None:
        return error(400, problem, "payload")
    return Response(content=b"", status_code=200)


@post("/slack/commands", status_code=200)
async def slack_commands(request: Request[Any, Any, Any], rt: NamedDependency[Runtime]) -> Response[Any]:
    body, refused = await _slack_body(rt, request)
    if refused is not None:
        return refused
    assert rt.slack_requests is not None
    return Response(content=await rt.slack_requests.command(body), media_type=JSON)
