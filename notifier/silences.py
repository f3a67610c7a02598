"""Alertmanager's silences, through its API v2: create one for a group's labels, expire it, list the active ones.

The peers of `alertmanager.urls` are tried in order: a peer that cannot be reached or answers 5xx gives way to the
next (Alertmanager gossips a silence to every peer of its cluster); a 4xx is Alertmanager refusing the request
itself and is not tried elsewhere. Every failure is a `SilenceError` whose text a person can act on; no credential
is in it (the redaction knows them as configured secrets, and URLs are shown without their user info).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import msgspec

from notifier.errors import NotifierError
from notifier.matchers import GroupKey, MatchOp
from notifier.settings import AlertmanagerSettings

OWN_COMMENT = "Silenced from the notifier's "  # how the comment of every silence the notifier makes begins


class SilenceError(NotifierError):
    """A silence could not be made, expired or listed; the text says why."""


class Matcher(msgspec.Struct):
    """A silence's matcher, as Alertmanager's API writes it."""

    name: str
    value: str
    isRegex: bool = False
    isEqual: bool = True

    def text(self) -> str:
        """As a filter of Alertmanager's API: name="value", name!~"regex", ..."""
        op = ("=~" if self.isEqual else "!~") if self.isRegex else ("=" if self.isEqual else "!=")
        return f"{self.name}{op}{json.dumps(self.value, ensure_ascii=False)}"


class AlertSeen(msgspec.Struct):
    """An alert as Alertmanager's API lists it (the fields the notifier uses)."""

    fingerprint: str
    labels: dict[str, str]


class SilenceStatus(msgspec.Struct):
    state: str  # active, pending, expired


class Silence(msgspec.Struct, kw_only=True):
    """A silence as Alertmanager's API tells it (the fields the notifier uses)."""

    id: str
    matchers: list[Matcher]
    startsAt: datetime
    endsAt: datetime
    createdBy: str
    comment: str
    status: SilenceStatus

    def labels(self) -> dict[str, str]:
        """The equality matchers, as labels."""
        return {m.name: m.value for m in self.matchers if m.isEqual and not m.isRegex}


class _Created(msgspec.Struct):
    silenceID: str


def _shown(url: str) -> str:
    """A URL as it may appear in a message: without user info."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def silence_link(settings: AlertmanagerSettings, silence_id: str) -> str:
    """Where a person sees the silence in Alertmanager's UI."""
    base = settings.external_url or _shown(settings.urls[0])
    return f"{base.rstrip('/')}/#/silences/{quote(silence_id, safe='')}"


class SilenceClient:
    def __init__(self, settings: AlertmanagerSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._settings = settings
        headers = {"Accept": "application/json"}
        if settings.bearer_token:
            headers["Authorization"] = f"Bearer {settings.bearer_token}"
        elif settings.basic_auth is not None:
            pair = f"{settings.basic_auth.username}:{settings.basic_auth.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self._http = httpx.AsyncClient(headers=headers, timeout=float(settings.timeout), transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create(
        self,
        matchers: Sequence[Matcher],
        starts_at: float,
        ends_at: float,
        created_by: str,
        comment: str,
        replacing: str | None = None,
    ) -> str:
        """A silence with these matchers, from `starts_at` to `ends_at` (unix seconds); its id. `replacing`: the id
        of a silence this one takes the place of (Alertmanager changes that one, or expires it and makes this one:
        either way one silence is left)."""
        if not matchers:
            raise SilenceError("a silence needs at least one matcher")
        body = {
            "matchers": [msgspec.to_builtins(m) for m in matchers],
            "startsAt": _rfc3339(starts_at),
            "endsAt": _rfc3339(ends_at),
            "createdBy": created_by,
            "comment": comment,
        }
        if replacing is not None:
            body["id"] = replacing
        answer = await self._call("POST", "/api/v2/silences", json=body)
        try:
            return msgspec.json.decode(answer.content, type=_Created).silenceID
        except msgspec.ValidationError as exc:
            raise SilenceError(f"Alertmanager's answer has no silence id: {exc}") from None

    async def alerts(self, matchers: Sequence[Matcher]) -> list[AlertSeen]:
        """Every alert Alertmanager holds now that these matchers would cover (active, silenced or inhibited)."""
        params: dict[str, str | list[str]] = {"filter": [m.text() for m in matchers]}
        params.update(active="true", silenced="true", inhibited="true", unprocessed="true")
        answer = await self._call("GET", "/api/v2/alerts", params=params)
        try:
            return msgspec.json.decode(answer.content, type=list[AlertSeen])
        except msgspec.ValidationError as exc:
            raise SilenceError(f"Alertmanager's list of alerts could not be read: {exc}") from None

    async def expire(self, silence_id: str) -> None:
        await self._call("DELETE", f"/api/v2/silence/{quote(silence_id, safe='')}")

    async def active(self) -> list[Silence]:
        """The silences in force now, the one that ends first first."""
        answer = await self._call("GET", "/api/v2/silences")
        silences = msgspec.json.decode(answer.content, type=list[Silence])
        return sorted((s for s in silences if s.status.state == "active"), key=lambda s: s.endsAt)

    async def own_in_force(self, matchers: Sequence[Matcher]) -> Silence | None:
        """A silence in force that the notifier made with exactly these matchers (the one that ends last), found by
        its comment, whether the notifier's store knows of it or not. A silence a person made in Alertmanager is
        never one of these."""
        wanted = sorted(msgspec.structs.astuple(m) for m in matchers)
        own = [
            s
            for s in await self.active()
            if s.comment.startswith(OWN_COMMENT) and sorted(msgspec.structs.astuple(m) for m in s.matchers) == wanted
        ]
        return own[-1] if own else None

    async def _call(
        self, method: str, path: str, json: Any = None, params: dict[str, str | list[str]] | None = None
    ) -> httpx.Response:
        failures: list[str] = []
        for url in self._settings.urls:
            shown = _shown(url)
            try:
                answer = await self._http.request(method, url.rstrip("/") + path, json=json, params=params)
            except httpx.HTTPError as exc:
                failures.append(f"{shown}: {type(exc).__name__}")
                continue
            if answer.status_code >= 500:
                failures.append(f"{shown}: HTTP {answer.status_code}")
                continue
            if answer.status_code >= 400:
                said = answer.text.strip().strip('"')[:300] or answer.reason_phrase
                raise SilenceError(f"Alertmanager refused it: {said} (HTTP {answer.status_code})")
            return answer
        raise SilenceError("no Alertmanager answered: " + "; ".join(failures))


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def group_matchers(key: GroupKey) -> list[Matcher]:
    """The matchers of a silence that covers exactly one alert group: the route's own matchers, as they are (a
    regex or a negative matcher kept so), and the group's labels as equality matchers."""
    out: list[Matcher] = []
    for m in key.route:
        regex = m.op in (MatchOp.RE, MatchOp.NRE)
        out.append(Matcher(m.name, m.value, isRegex=regex, isEqual=m.op in (MatchOp.EQ, MatchOp.RE)))
    out += [Matcher(name, value) for name, value in sorted(key.labels.items())]
    unique: list[Matcher] = []
    for matcher in out:
        if matcher not in unique:
            unique.append(matcher)
    return unique
