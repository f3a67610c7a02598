"""The ntfy channel: a push to a phone through ntfy.sh or a self-hosted ntfy server, published as JSON (`POST /` on
the server, the topic in the body), with a priority by severity, tags, a click link to the group in Alertmanager and
a "Silence" view action.

On a public server the topic is the password of its subscribers, so it is a secret like the access token; neither
appears in an error. ntfy answers a refusal as `{"code", "http", "error"}`: 429 is its request limit (retried after
its wait), other 4xx are permanent, 5xx and no answer are retried."""

from __future__ import annotations

import contextlib
import hashlib
import re
from typing import Annotated, Any

import httpx
import msgspec

from notifier.channels import Capabilities, ChannelPlugin, RateRule, Refusal, Shown, failure, refusal_of_status
from notifier.channels.push import Push, render
from notifier.clock import Clock
from notifier.configtypes import Duration, Strict, secret
from notifier.domain import DeliveryReceipt, Message, Severity
from notifier.templates import Renderer, Template

TEMPLATE = Template("ntfy", "text", "push.j2")
MAX_MESSAGE_BYTES = 4096  # a longer message becomes an attachment on the phone
MAX_TITLE = 250
TOPIC = re.compile(r"[A-Za-z0-9_-]{1,64}")
# ntfy.sh's default request limit per visitor: a burst of 60, then one request every 5 seconds (a bucket of 60
# that refills one request per REQUEST_WINDOW / REQUEST_BURST)
REQUEST_BURST = 60
REQUEST_WINDOW = 300.0
Priority = Annotated[int, msgspec.Meta(ge=1, le=5)]


class NtfyTarget(Strict, kw_only=True):
    server: str = "https://ntfy.sh"
    topic: str | None = None
    topic_file: str | None = None
    token: str | None = None  # an access token (tk_...), sent as a bearer token
    token_file: str | None = None
    username: str | None = None
    password: str | None = None
    password_file: str | None = None
    # 5 max/urgent, 4 high, 3 default, 2 low, 1 min
    priority: dict[Severity, Priority] = msgspec.field(
        default_factory=lambda: {Severity.CRITICAL: 5, Severity.WARNING: 4, Severity.INFO: 3}
    )
    resolved_priority: Priority = 2
    timeout: Duration = Duration(10.0)

    def __post_init__(self) -> None:
        if not self.server.startswith(("http://", "https://")):
            raise ValueError("server: expected an http:// or https:// URL")
        self.topic = secret(self.topic, self.topic_file, "topic", required=True)
        if not TOPIC.fullmatch(str(self.topic)):
            raise ValueError("topic: letters, digits, '_' and '-', at most 64 characters")
        self.token = secret(self.token, self.token_file, "token", required=False)
        self.password = secret(self.password, self.password_file, "password", required=False)
        if self.password and not self.username:
            raise ValueError("username: required with password")
        if self.token and self.username:
            raise ValueError("token: give either token or username and password, not both")


TAGS = {Severity.CRITICAL: "rotating_light", Severity.WARNING: "warning", Severity.INFO: "information_source"}


def publication(target: NtfyTarget, push: Push, message: Message) -> dict[str, Any]:
    """The JSON ntfy publishes."""
    g = message.group
    firing = bool(g.firing)
    body: dict[str, Any] = {
        "topic": str(target.topic),
        "title": push.title,
        "message": push.body,
        "priority": target.priority.get(g.severity, 3) if firing else target.resolved_priority,
        "tags": [TAGS[g.severity] if firing else "white_check_mark"],
    }
    if message.silent:
        body["priority"] = min(body["priority"], 2)
    if push.link:
        body["click"] = push.link
    if push.silence_link:
        body["actions"] = [{"action": "view", "label": "Silence", "url": push.silence_link, "clear": True}]
    return body


def _render(renderer: Renderer, message: Message, now: float) -> Push:
    if message.minimal:
        text = renderer.minimal_text(message, now)
        title, _, rest = text.partition("\n")
        return Push(title, rest or title, "", "")
    return render(
        renderer,
        TEMPLATE,
        message,
        now,
        title_limit=MAX_TITLE,
        body_limit=MAX_MESSAGE_BYTES,
        size=lambda s: len(s.encode()),
    )


class NtfyChannel:
    name = "ntfy"

    def __init__(self, key: str, target: NtfyTarget, renderer: Renderer, clock: Clock) -> None:
        self._target = target
        self._renderer = renderer
        self._clock = clock
        self._server = target.server.rstrip("/")
        headers = {}
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
        auth = httpx.BasicAuth(target.username, str(target.password or "")) if target.username else None
        self._http = httpx.AsyncClient(timeout=float(target.timeout), headers=headers, auth=auth)
        # the request limit is the server's per visitor: every target on that server shares it
        self._bucket = "ntfy:" + hashlib.sha256(self._server.encode()).hexdigest()[:16]

    def rate_rules(self) -> list[RateRule]:
        return [RateRule(self._bucket, REQUEST_BURST, REQUEST_WINDOW, refills=True)]

    async def send(self, message: Message) -> DeliveryReceipt:
        push = _render(self._renderer, message, self._clock.now())
        try:
            resp = await self._http.post(self._server + "/", json=publication(self._target, push, message))
        except httpx.HTTPError as exc:
            raise failure(Refusal.UNAVAILABLE, f"ntfy unreachable: {type(exc).__name__}") from None
        if resp.status_code < 300:
            found = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
            return DeliveryReceipt(ref=str(found.get("id")) if found.get("id") else None)
        raise self._refused(resp)

    def _refused(self, resp: httpx.Response) -> Exception:
        refusal = refusal_of_status(resp.status_code)
        said = ""
        with contextlib.suppress(ValueError):
            said = str(resp.json().get("error", ""))[:200]
        wait = _retry_after(resp.headers.get("retry-after")) if refusal is Refusal.RATE_LIMITED else None
        if refusal is Refusal.RATE_LIMITED and wait is None:
            wait = REQUEST_WINDOW / REQUEST_BURST  # its limit refills one request at a time
        return failure(refusal, f"ntfy answered {resp.status_code}{': ' + said if said else ''}", retry_after=wait)

    async def edit(self, message: Message) -> DeliveryReceipt:
        raise failure(Refusal.PERMANENT, "this channel cannot edit a message it sent")

    async def aclose(self) -> None:
        await self._http.aclose()


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _show(renderer: Renderer, message: Message, now: float) -> list[Shown]:
    push = _render(renderer, message, now)
    target = NtfyTarget(topic="preview")
    return [Shown(text=f"{push.title}\n{push.body}", subject=push.title, raw=publication(target, push, message))]


PLUGIN: ChannelPlugin[NtfyTarget] = ChannelPlugin(
    name="ntfy",
    target=NtfyTarget,
    templates=(TEMPLATE,),
    build=NtfyChannel,
    show=_show,
    capabilities=Capabilities(),
)
