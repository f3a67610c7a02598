"""The Pushover channel: a push to phones through api.pushover.net (`POST /1/messages.json`), with a priority by
severity. A critical group goes out as an emergency (priority 2): the phone repeats it every `retry` seconds until
someone acknowledges it or `expire` passes. Its receipt is the message's reference; `acknowledgement` reads it
(`GET /1/receipts/{receipt}.json`), so that acknowledging on the phone acknowledges the group in the notifier, and a
resolve cancels the repeats of every emergency of the group (`cancel_by_tag`, each emergency tagged with its group).

Pushover answers a refusal with HTTP 4xx, `status: 0` and an `errors` list: permanent (a refused title or message
is a content refusal, so the worker sends the minimal form); 429 means the application's monthly quota is used up
(retried when `X-Limit-App-Reset` says it renews); 5xx and no answer are retried, never faster than every 5 s."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Annotated, Any

import httpx
import msgspec

from notifier.channels import (
    Acknowledged,
    Capabilities,
    ChannelPlugin,
    RateRule,
    Refusal,
    Shown,
    failure,
    refusal_of_status,
)
from notifier.channels.push import Push, render
from notifier.clock import Clock
from notifier.configtypes import Duration, Strict, secret
from notifier.domain import DeliveryReceipt, Message, Severity
from notifier.errors import PermanentError
from notifier.templates import Renderer, Template

TEMPLATE = Template("pushover", "text", "push.j2")
API = "https://api.pushover.net"
MAX_MESSAGE = 1024
MAX_TITLE = 250
MAX_URL = 512
MIN_RETRY_WAIT = 5.0  # Pushover: after a 5xx, no faster than every 5 seconds
RECEIPT_PREFIX = "receipt:"  # a message's reference when it is an emergency with a receipt
Priority = Annotated[int, msgspec.Meta(ge=-2, le=2)]


class PushoverTarget(Strict, kw_only=True):
    token: str | None = None  # the application's API token
    token_file: str | None = None
    user: str | None = None  # a user or group key
    user_file: str | None = None
    device: str | None = None
    priority: dict[Severity, Priority] = msgspec.field(
        default_factory=lambda: {Severity.CRITICAL: 2, Severity.WARNING: 1, Severity.INFO: 0}
    )
    resolved_priority: Priority = -1
    retry: Duration = Duration(60.0)  # an emergency repeats this often until acknowledged
    expire: Duration = Duration(3600.0)  # ... and for at most this long
    sound: str | None = None
    api_url: str = API
    timeout: Duration = Duration(10.0)

    def __post_init__(self) -> None:
        self.token = secret(self.token, self.token_file, "token", required=True)
        self.user = secret(self.user, self.user_file, "user", required=True)
        if not 30 <= float(self.retry) <= 10800:
            raise ValueError("retry: expected from 30s to 3h (Pushover's bounds)")
        if not float(self.retry) <= float(self.expire) <= 10800:
            raise ValueError("expire: expected from retry to 3h (Pushover's bounds)")
        if not self.api_url.startswith(("http://", "https://")):
            raise ValueError("api_url: expected an http:// or https:// URL")


def group_tag(group_key: str) -> str:
    """The tag every emergency of a group carries, so that its resolve can cancel them all."""
    return "g" + hashlib.sha256(group_key.encode()).hexdigest()[:20]


def submission(target: PushoverTarget, push: Push, message: Message) -> dict[str, Any]:
    """The form Pushover takes (without the token)."""
    g = message.group
    firing = bool(g.firing)
    priority = target.priority.get(g.severity, 0) if firing else target.resolved_priority
    if message.silent:
        priority = min(priority, -1)
    form: dict[str, Any] = {
        "user": str(target.user),
        "title": push.title,
        "message": push.body,
        "priority": priority,
    }
    if priority == 2:
        form |= {"retry": int(target.retry), "expire": int(target.expire), "tags": group_tag(g.group_key)}
    if push.link and len(push.link) <= MAX_URL:
        form |= {"url": push.link, "url_title": "Alertmanager"}
    if target.device:
        form["device"] = target.device
    if target.sound:
        form["sound"] = target.sound
    return form


def _render(renderer: Renderer, message: Message, now: float) -> Push:
    if message.minimal:
        text = renderer.minimal_text(message, now)
        title, _, rest = text.partition("\n")
        return Push(title, rest or title, "", "")
    return render(renderer, TEMPLATE, message, now, title_limit=MAX_TITLE, body_limit=MAX_MESSAGE)


class PushoverChannel:
    name = "pushover"

    def __init__(self, key: str, target: PushoverTarget, renderer: Renderer, clock: Clock) -> None:
        self._target = target
        self._renderer = renderer
        self._clock = clock
        self._api = target.api_url.rstrip("/")
        self._token = str(target.token)
        self._http = httpx.AsyncClient(timeout=float(target.timeout))
        self._bucket = "pushover:" + hashlib.sha256(self._token.encode()).hexdigest()[:16]

    def rate_rules(self) -> list[RateRule]:
        # Pushover asks for at most two requests at a time per application
        return [RateRule(self._bucket, 2, 1.0)]

    async def send(self, message: Message) -> DeliveryReceipt:
        g = message.group
        if not g.firing:  # the group resolved: its emergencies stop repeating on the phones
            with contextlib.suppress(PermanentError):  # nothing left to cancel: the resolve itself still goes out
                await self._call("POST", f"/1/receipts/cancel_by_tag/{group_tag(g.group_key)}.json", {})
        push = _render(self._renderer, message, self._clock.now())
        found = await self._call("POST", "/1/messages.json", submission(self._target, push, message))
        receipt = found.get("receipt")
        return DeliveryReceipt(ref=f"{RECEIPT_PREFIX}{receipt}" if receipt else str(found.get("request") or ""))

    async def acknowledgement(self, ref: str) -> Acknowledged | None:
        """Whether the emergency sent as `ref` was acknowledged on a phone (None: not yet, or not an emergency)."""
        if not ref.startswith(RECEIPT_PREFIX):
            return None
        receipt = ref.removeprefix(RECEIPT_PREFIX)
        found = await self._call("GET", f"/1/receipts/{receipt}.json", None)
        if not found.get("acknowledged"):
            return None
        device = found.get("acknowledged_by_device") or ""
        by = f"{found.get('acknowledged_by', '')[:8]}…" + (f" ({device})" if device else "")
        return Acknowledged(f"Pushover {by}", float(found.get("acknowledged_at") or self._clock.now()))

    async def _call(self, method: str, path: str, form: dict[str, Any] | None) -> dict[str, Any]:
        try:
            if method == "GET":
                resp = await self._http.get(self._api + path, params={"token": self._token})
            else:
                resp = await self._http.post(self._api + path, data={"token": self._token, **(form or {})})
        except httpx.HTTPError as exc:
            raise failure(Refusal.UNAVAILABLE, f"Pushover unreachable: {type(exc).__name__}") from None
        try:
            body: dict[str, Any] = resp.json()
        except ValueError:
            body = {}
        if resp.status_code < 300 and body.get("status") == 1:
            return body
        raise self._refused(resp, body)

    def _refused(self, resp: httpx.Response, body: dict[str, Any]) -> Exception:
        status = resp.status_code if resp.status_code >= 300 else 400  # a 200 without status 1 is a refusal too
        refusal = refusal_of_status(status)
        errors = [str(e)[:200] for e in body.get("errors", []) if isinstance(e, str)]
        said = f"Pushover answered {resp.status_code}" + (f": {'; '.join(errors)}" if errors else "")
        if refusal is Refusal.PERMANENT and ("message" in body or "title" in body):
            refusal = Refusal.CONTENT  # the text itself was refused: the minimal form may pass
        wait: float | None = None
        if refusal is Refusal.RATE_LIMITED:
            reset = _number(resp.headers.get("x-limit-app-reset"))
            wait = max(60.0, reset - self._clock.now()) if reset else 3600.0
        elif refusal is Refusal.UNAVAILABLE:
            wait = MIN_RETRY_WAIT
        return failure(refusal, said, retry_after=wait)

    async def edit(self, message: Message) -> DeliveryReceipt:
        raise failure(Refusal.PERMANENT, "this channel cannot edit a message it sent")

    async def aclose(self) -> None:
        await self._http.aclose()


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _show(renderer: Renderer, message: Message, now: float) -> list[Shown]:
    push = _render(renderer, message, now)
    target = PushoverTarget(token="preview", user="preview")  # noqa: S106 -- a preview's stand-in, never sent
    return [Shown(text=f"{push.title}\n{push.body}", subject=push.title, raw=submission(target, push, message))]


PLUGIN: ChannelPlugin[PushoverTarget] = ChannelPlugin(
    name="pushover",
    target=PushoverTarget,
    templates=(TEMPLATE,),
    build=PushoverChannel,
    show=_show,
    capabilities=Capabilities(acknowledges=True),
)
