"""Who may post: a bearer token and/or basic auth from the config, compared in constant time. `require_credentials`
is the guard of every route that is not public."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from notifier.domain import WebhookOutcome
from notifier.settings import AuthSettings

REFUSALS_COUNTED = "refusals_counted"  # a route option: a refusal is counted and logged as a refused webhook


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def authorized(auth: AuthSettings, header: str | None) -> bool:
    """True when no auth is configured, or the Authorization header carries a configured credential."""
    if not auth.enabled:
        return True
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and auth.bearer_token:
        return _eq(value, auth.bearer_token)
    if scheme == "basic" and auth.basic_auth is not None:
        try:
            user, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        ok_user = _eq(user, auth.basic_auth.username)
        ok_pass = _eq(password, auth.basic_auth.password or "")
        return ok_user and ok_pass
    return False


def challenge(auth: AuthSettings) -> str:
    schemes = []
    if auth.bearer_token:
        schemes.append('Bearer realm="notifier"')
    if auth.basic_auth is not None:
        schemes.append('Basic realm="notifier", charset="UTF-8"')
    return ", ".join(schemes)


async def require_credentials(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """A Litestar guard: 401 with the configured schemes in WWW-Authenticate, unless the request carries a
    configured credential (or no auth is configured)."""
    state = connection.app.state
    auth: AuthSettings = state.runtime.settings.server.auth
    if authorized(auth, connection.headers.get("authorization")):
        return
    reason = "missing or wrong credentials"
    if handler.opt.get(REFUSALS_COUNTED):
        state.runtime.metrics.webhook(WebhookOutcome.UNAUTHORIZED, 0.0)
        state.refusals.refused(401, reason, None, connection.client.host if connection.client else "")
    raise NotAuthorizedException(reason, headers={"WWW-Authenticate": challenge(auth)})
