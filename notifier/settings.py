"""Typed configuration: one YAML file, ${ENV} substitution, *_file secrets, validated once at start.

Every error names the file, the key path and the reason, e.g.
`notifier.yml: receivers[1].telegram[0].chat_id: expected an integer or @channelname`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import yaml

from notifier.channels.registry import PLUGINS
from notifier.configtypes import (
    Duration,
    Secret,
    Strict,
    parse_duration,
    parse_weekdays,
    read_secret_file,
    secret,
)
from notifier.digest_schedule import DigestSchedule
from notifier.errors import ConfigError
from notifier.matchers import parse_matcher
from notifier.templates import DEFAULT_HIDDEN_LABELS, DEFAULT_MAX_ALERTS, DEFAULT_MAX_PARTS

__all__ = ["Duration", "Secret", "parse_duration", "read_secret_file"]

DEFAULT_CONFIG = "notifier.yml"
_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class BasicAuthSettings(Strict, kw_only=True):
    username: str
    password: str | None = None
    password_file: str | None = None

    def __post_init__(self) -> None:
        self.password = secret(self.password, self.password_file, "password", required=True)


class AuthSettings(Strict, kw_only=True):
    bearer_token: str | None = None
    bearer_token_file: str | None = None
    basic_auth: BasicAuthSettings | None = None
    # serving on a non-loopback address without auth is refused unless this says it is meant
    allow_unauthenticated: bool = False

    def __post_init__(self) -> None:
        if self.allow_unauthenticated and self.bearer_token is not None and not self.bearer_token.strip():
            self.bearer_token = None  # an unset ${NOTIFIER_TOKEN}, where running without auth was said to be meant
        self.bearer_token = secret(self.bearer_token, self.bearer_token_file, "bearer_token", required=False)

    @property
    def enabled(self) -> bool:
        return bool(self.bearer_token or self.basic_auth)


class ServerSettings(Strict, kw_only=True):
    listen: str = "127.0.0.1:9095"  # loopback unless the config says otherwise: see the auth check below
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 4 * 1024 * 1024
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_timeout: Duration = Duration(20.0)

    def __post_init__(self) -> None:
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("listen: expected HOST:PORT, e.g. 0.0.0.0:9095")
        if not self.loopback_only and not self.auth.enabled and not self.auth.allow_unauthenticated:
            raise ValueError(
                f"auth: {self.listen} is reachable from other machines, and no auth is set: set bearer_token_file "
                "or basic_auth (the same credentials as Alertmanager's http_config), or "
                "allow_unauthenticated: true if a proxy in front checks them"
            )

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def loopback_only(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


MIN_RETENTION = 86400.0  # a shorter window would delete dead messages an operator may still want to retry


class StorageSettings(Strict, kw_only=True):
    url: str = "sqlite:///data/notifier.db"
    pool_size: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    connect_timeout: Duration = Duration(5.0)
    # sent and dead messages, payloads nothing refers to, resolved group states: deleted once older than this
    retention: Duration = Duration(30 * 86400.0)
    timeline: bool = True  # record every decision and attempt, for `notifier explain` and the web view

    def __post_init__(self) -> None:
        scheme = self.url.split(":", 1)[0].split("+", 1)[0]
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("url: expected sqlite:///PATH or postgresql://USER@HOST/DB")
        if 0 < self.retention < MIN_RETENTION:
            raise ValueError("retention: expected 0 (keep everything) or at least 1d")


class DedupSettings(Strict, kw_only=True):
    redelivery_window: Duration = Duration(600.0)


class DeliverySettings(Strict, kw_only=True):
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 12
    max_age: Duration = Duration(86400.0)
    backoff_initial: Duration = Duration(2.0)
    backoff_max: Duration = Duration(300.0)
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=256)] = 16
    lease: Duration = Duration(60.0)
    poll_interval: Duration = Duration(1.0)
    send_timeout: Duration = Duration(20.0)


class TemplateOverride(Strict, kw_only=True):
    """A receiver's own template for one channel: inline text, or a file."""

    inline: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        if bool(self.inline) == bool(self.file):
            raise ValueError("give exactly one of inline or file")
        if self.file:
            try:
                self.inline = Path(self.file).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"file: cannot read {self.file}: {exc.strerror or exc}") from None

    @property
    def source(self) -> str:
        return self.inline or ""


class MessageSettings(Strict, kw_only=True):
    """How much of a group one message spells out: at most `max_alerts` alerts (the most important), in at most
    `max_parts` posts where a provider needs several; the rest is "+N more" with a link to Alertmanager."""

    max_alerts: Annotated[int, msgspec.Meta(ge=1, le=1000)] = DEFAULT_MAX_ALERTS
    max_parts: Annotated[int, msgspec.Meta(ge=1, le=50)] = DEFAULT_MAX_PARTS
    # labels that say where an alert was measured, not what is wrong: not shown (the title already names the
    # alert, severity, bot and symbol)
    hide_labels: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_HIDDEN_LABELS))


class DigestSettings(Strict, kw_only=True):
    schedule: str  # "every 1h", "every 30m", or a cron expression such as "0 8 * * *"
    timezone: str = "UTC"
    send_empty: bool = False

    def __post_init__(self) -> None:
        try:
            DigestSchedule.parse(self.schedule, self.timezone)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        except Exception:
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from None


class AllowedActors(Strict, kw_only=True):
    """Who may act from the chat: Telegram user ids, Slack user ids. Both are permanent; a Telegram @username is
    not (it can be changed, and then taken by someone else), so it is refused here."""

    telegram: list[int | str] = msgspec.field(default_factory=list)
    slack: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        ids: list[int | str] = []
        for i, who in enumerate(self.telegram):
            if isinstance(who, int) or re.fullmatch(r"\d+", who):
                ids.append(int(who))
            elif re.fullmatch(r"@?[A-Za-z][A-Za-z0-9_]{3,31}", who):
                raise ValueError(
                    f"telegram[{i}]: {who!r} is a username; give the person's numeric Telegram user id instead (a "
                    "username can change hands, an id cannot). The bot tells anyone it refuses their id: ask them to "
                    "send /help to the bot or press a button"
                )
            else:
                raise ValueError(f"telegram[{i}]: expected a numeric Telegram user id, got {who!r}")
        self.telegram = ids
        for i, who in enumerate(self.slack):
            if not re.fullmatch(r"[UW][A-Z0-9]{2,}", who):
                raise ValueError(f"slack[{i}]: expected a Slack user id such as U0123ABCD, got {who!r}")

    def empty(self) -> bool:
        return not self.telegram and not self.slack


class ReceiverActions(Strict, kw_only=True):
    """Per receiver: who may act on the messages of its targets (instead of `actions.allowed`)."""

    allowed: AllowedActors


class TelegramUpdates(Strict, kw_only=True):
    """How the notifier hears the presses and commands of its Telegram bots: long polling (no public URL needed;
    one replica polls at a time) or a webhook Telegram calls at `webhook_url` with `secret_token`."""

    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str | None = None  # the public URL of POST /telegram/updates
    secret_token: str | None = None
    secret_token_file: str | None = None
    poll_timeout: Duration = Duration(25.0)  # how long one getUpdates waits for updates
    lease: Duration = Duration(60.0)  # a poller that stops renewing is replaced after this long

    def __post_init__(self) -> None:
        self.secret_token = secret(self.secret_token, self.secret_token_file, "secret_token", required=False)
        if self.mode == "webhook":
            if not self.webhook_url or not self.webhook_url.startswith("https://"):
                raise ValueError("webhook_url: required with mode webhook, an https:// URL")
            if self.secret_token is None:
                raise ValueError("secret_token: required with mode webhook (or secret_token_file)")
        if self.secret_token is not None and not re.fullmatch(r"[A-Za-z0-9_-]{16,256}", str(self.secret_token)):
            raise ValueError(
                "secret_token: 16 to 256 characters of A-Z, a-z, 0-9, _ and - (it is all that proves an update comes "
                "from Telegram; `openssl rand -hex 32` makes one)"
            )
        if self.lease < 10:
            raise ValueError("lease: expected at least 10s")
        if self.poll_timeout < 1 or self.poll_timeout * 2 > self.lease:
            raise ValueError("poll_timeout: from 1s to half the lease (the poller renews its lease between polls)")


SLACK_RESPONSE_URLS = ["https://hooks.slack.com/", "https://hooks.slack-gov.com/"]


class SlackInteractivity(Strict, kw_only=True):
    """The Slack app's signing secret: every interaction and command Slack posts is signed with it. The answer to
    a press goes to the request's response_url only where it starts with one of `response_urls` (Slack's hosts)."""

    signing_secret: str | None = None
    signing_secret_file: str | None = None
    response_urls: list[str] = msgspec.field(default_factory=lambda: list(SLACK_RESPONSE_URLS))

    def __post_init__(self) -> None:
        self.signing_secret = secret(self.signing_secret, self.signing_secret_file, "signing_secret", required=True)
        for i, prefix in enumerate(self.response_urls):
            parts = urlsplit(prefix)
            if parts.scheme not in ("http", "https") or not parts.hostname or not prefix.endswith("/"):
                raise ValueError(f"response_urls[{i}]: expected a URL prefix ending in '/', got {prefix!r}")


class ActionsSettings(Strict, kw_only=True):
    """Acting from the chat: buttons on firing messages (Ack, Silence, Unsilence, Unack) and commands (/alerts,
    /silences, /status, /help), for the people in `allowed`."""

    allowed: AllowedActors = msgspec.field(default_factory=AllowedActors)
    silence_durations: list[Duration] = msgspec.field(
        default_factory=lambda: [Duration(3600.0), Duration(4 * 3600.0), Duration(24 * 3600.0)]
    )
    timezone: str = "UTC"  # the times messages show ("silenced until 07:12")
    button_lifetime: Duration = Duration(7 * 86400.0)  # a button pressed later is answered "expired"
    telegram: TelegramUpdates = msgspec.field(default_factory=TelegramUpdates)
    slack: SlackInteractivity | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.silence_durations) <= 4:
            raise ValueError("silence_durations: give one to four durations")
        for i, d in enumerate(self.silence_durations):
            if not 60 <= d <= 366 * 86400:
                raise ValueError(f"silence_durations[{i}]: expected from 1m to 366d")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from None


class ReceiverSettings(Strict, kw_only=True):
    """A receiver: its name, its targets under each channel's key (`telegram: [...]`), templates and digest."""

    name: str
    send_resolved: bool = True
    templates: dict[str, TemplateOverride] = msgspec.field(default_factory=dict)  # template key -> override
    message: MessageSettings = msgspec.field(default_factory=MessageSettings)
    digest: DigestSettings | None = None
    actions: ReceiverActions | None = None
    # channel name -> its targets' settings, in the registry's order; read from the channel keys, not a key itself
    channels: dict[str, list[Any]] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.name):
            raise ValueError("name: use letters, digits, '_', '.', '-'")

    def targets(self) -> list[tuple[str, str, Any]]:
        """(target key, channel, target settings) for every target; the key names it in the outbox and the logs."""
        return [
            (f"{self.name}/{channel}/{i}", channel, t)
            for channel, items in self.channels.items()
            for i, t in enumerate(items)
        ]

    def template_sources(self) -> dict[str, str]:
        return {key: t.source for key, t in self.templates.items()}


QuietMode = Literal["defer", "silent", "digest", "drop"]


class RouteQuietHours(Strict, kw_only=True):
    schedule: str
    mode: QuietMode = "defer"
    bypass_severities: list[Literal["critical", "warning", "info"]] = msgspec.field(
        default_factory=lambda: ["critical"]
    )
    skip_resolved: bool = False  # defer: no catch-up for a group that fired and fully resolved inside the window


class RouteSettings(Strict, kw_only=True):
    matchers: list[str] = msgspec.field(default_factory=list)
    receiver: str | None = None
    receivers: list[str] = msgspec.field(default_factory=list)
    routes: list[RouteSettings] = msgspec.field(default_factory=list)
    continue_: bool = msgspec.field(default=False, name="continue")
    quiet_hours: RouteQuietHours | None = None
    repeat_interval: Duration | None = None
    digest: bool = False  # everything this route sends goes into its receivers' digests

    def all_receivers(self) -> list[str]:
        return ([self.receiver] if self.receiver else []) + list(self.receivers)


class TimeRange(Strict, kw_only=True):
    start: str
    end: str

    def __post_init__(self) -> None:
        for key in ("start", "end"):
            value = getattr(self, key)
            m = re.fullmatch(r"(\d{2}):(\d{2})", value)
            if not m or int(m.group(1)) > 24 or int(m.group(2)) > 59 or (m.group(1) == "24" and m.group(2) != "00"):
                raise ValueError(f"{key}: expected HH:MM (00:00 to 24:00), got {value!r}")


class ScheduleSettings(Strict, kw_only=True):
    location: str = "UTC"
    weekdays: list[str] = msgspec.field(default_factory=lambda: ["monday:sunday"])
    times: list[TimeRange] = msgspec.field(default_factory=list)
    dates: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.location)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"location: unknown time zone {self.location!r}") from None
        for i, w in enumerate(self.weekdays):
            try:
                parse_weekdays(w)
            except ValueError as exc:
                raise ValueError(f"weekdays[{i}]: {exc}") from None
        for i, d in enumerate(self.dates):
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", d):
                raise ValueError(f"dates[{i}]: expected YYYY-MM-DD, got {d!r}")


class StormSettings(Strict, kw_only=True):
    threshold: Annotated[int, msgspec.Meta(ge=1)] = 10


class HeartbeatSettings(Strict, kw_only=True):
    """A dead-man's-switch ping (healthchecks.io, Uptime Kuma push, Cronitor...): while the notifier can store and
    deliver, it calls `url` every `interval`; the service alarms when the calls stop. The URL carries the check's
    token, so it is a secret."""

    url: str | None = None
    url_file: str | None = None
    interval: Duration = Duration(60.0)
    timeout: Duration = Duration(10.0)

    def __post_init__(self) -> None:
        self.url = secret(self.url, self.url_file, "url", required=True)
        if not str(self.url).startswith(("http://", "https://")):
            raise ValueError("url: expected an http:// or https:// URL")
        if self.interval < 1:
            raise ValueError("interval: expected at least 1s")


class AlertmanagerSettings(Strict, kw_only=True):
    """Alertmanager's API, for silences made from the chat: one or more peers of a cluster, tried in order (a
    silence is gossiped to every peer), with the same credentials."""

    urls: list[str]
    bearer_token: str | None = None
    bearer_token_file: str | None = None
    basic_auth: BasicAuthSettings | None = None
    timeout: Duration = Duration(5.0)
    external_url: str | None = None  # where people open Alertmanager's UI; default: the first of `urls`

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("urls: give at least one Alertmanager URL")
        for i, url in enumerate(self.urls):
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"urls[{i}]: expected an http:// or https:// URL, got {url!r}")
        self.bearer_token = secret(self.bearer_token, self.bearer_token_file, "bearer_token", required=False)
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("bearer_token: give either bearer_token or basic_auth, not both")
        if self.timeout <= 0:
            raise ValueError("timeout: expected more than 0s")


class UIUser(Strict, kw_only=True):
    """A person who may log in to the web view: a name and a scrypt hash of the password (`notifier
    hash-password` makes one)."""

    name: str
    password_hash: str | None = None
    password_hash_file: str | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", self.name):
            raise ValueError("name: letters, digits and _ . @ -, at most 64")
        self.password_hash = secret(self.password_hash, self.password_hash_file, "password_hash", required=True)
        if not str(self.password_hash).startswith("scrypt$") or str(self.password_hash).count("$") != 5:
            raise ValueError("password_hash: expected a hash from `notifier hash-password` (scrypt$...)")


class UISettings(Strict, kw_only=True):
    """The web view at /ui: who may log in, how long a login lasts, the zone of its times."""

    users: list[UIUser]
    session_secret: str | None = None  # no longer used: sessions are kept in the store (accepted, with a note)
    session_secret_file: str | None = None
    session_lifetime: Duration = Duration(12 * 3600.0)
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not self.users:
            raise ValueError("users: give at least one user (name and password_hash)")
        names = [u.name for u in self.users]
        if len(set(names)) != len(names):
            raise ValueError("users: a name is given twice")
        self.session_secret = secret(self.session_secret, self.session_secret_file, "session_secret", required=False)
        if self.session_secret is not None and len(str(self.session_secret)) < 32:
            raise ValueError("session_secret: at least 32 characters")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from None


class Settings(Strict, kw_only=True):
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    storage: StorageSettings = msgspec.field(default_factory=StorageSettings)
    dedup: DedupSettings = msgspec.field(default_factory=DedupSettings)
    delivery: DeliverySettings = msgspec.field(default_factory=DeliverySettings)
    receivers: list[ReceiverSettings] = msgspec.field(default_factory=list)
    routes: RouteSettings = msgspec.field(default_factory=lambda: RouteSettings(receiver="console"))
    quiet_hours: dict[str, ScheduleSettings] = msgspec.field(default_factory=dict)
    storm: StormSettings = msgspec.field(default_factory=StormSettings)
    heartbeat: HeartbeatSettings | None = None
    alertmanager: AlertmanagerSettings | None = None
    actions: ActionsSettings | None = None
    ui: UISettings | None = None
    source: str = ""  # the file this came from; not a config key
    notes: list[str] = msgspec.field(default_factory=list)  # what `only_if_set` switched off; not a config key

    def receiver(self, name: str) -> ReceiverSettings:
        for r in self.receivers:
            if r.name == name:
                return r
        raise KeyError(name)


def _substitute(node: Any, path: str, env: Mapping[str, str]) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string scalar; `$$` stands for a literal `$`."""
    if isinstance(node, dict):
        return {k: _substitute(v, f"{path}.{k}" if path else str(k), env) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, f"{path}[{i}]", env) for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"environment variable {name} is not set (write ${{{name}:-default}} for a default)", path=path
        )

    return _ENV_REF.sub(repl, node)


def _only_if_set(names: Any, path: str, env: Mapping[str, str]) -> list[str]:
    """The variables of an `only_if_set` list that are unset or empty."""
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ConfigError("expected a list of environment variable names", path=f"{path}.only_if_set")
    return [n for n in names if not env.get(n, "").strip()]


def _switch(node: Any, path: str, env: Mapping[str, str], notes: list[str]) -> Any:
    """Leave out every mapping whose `only_if_set` names a variable that is unset or empty (before ${VAR}
    substitution, so that what is left out needs none of its variables), and say so in `notes`. A receiver whose
    targets are all left out this way delivers to the log instead."""
    if isinstance(node, list):
        kept = []
        for i, item in enumerate(node):
            missing = _only_if_set(item["only_if_set"], f"{path}[{i}]", env) if _switchable(item) else []
            if missing:
                notes.append(f"{path}[{i}] is off: {', '.join(missing)} not set")
                continue
            kept.append(_switch(item, f"{path}[{i}]", env, notes))
        return kept
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        where = f"{path}.{key}" if path else str(key)
        if key == "only_if_set":
            continue
        missing = _only_if_set(value["only_if_set"], where, env) if _switchable(value) else []
        if missing:
            notes.append(f"{where} is off: {', '.join(missing)} not set")
            continue
        out[key] = _switch(value, where, env, notes)
    if path.startswith("receivers[") and path.endswith("]"):
        had = any(node.get(k) for k in PLUGINS)
        if had and not any(out.get(k) for k in PLUGINS):
            out["log"] = [{}]
            notes.append(f"receiver {node.get('name')!r} has no target on: its messages go to the log")
    return out


def _switchable(node: Any) -> bool:
    return isinstance(node, dict) and "only_if_set" in node


def _dec_hook(typ: type, obj: Any) -> Any:
    if typ is Duration:
        return parse_duration(obj)
    raise NotImplementedError


_MSGSPEC_AT = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>[^`]*)`$", re.S)


def _split_validation_error(exc: msgspec.ValidationError) -> tuple[str, str]:
    """msgspec says `reason - at $.a[1].b`; we say `a[1].b: reason` (a field named in the reason joins the path)."""
    text = str(exc)
    m = _MSGSPEC_AT.match(text)
    path, msg = (m.group("path").lstrip("."), m.group("msg")) if m else ("", text)
    inner = re.match(r"^([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?): (.*)$", msg, re.S)
    if inner:
        path = f"{path}.{inner.group(1)}" if path else inner.group(1)
        msg = inner.group(2)
    msg = msg.replace("Object contains unknown field", "unknown key").replace(
        "Object missing required field", "missing required key"
    )
    return path, msg


def _check_references(s: Settings) -> None:
    names: set[str] = set()
    template_keys = {t.key for p in PLUGINS.values() for t in p.templates if t.overridable}
    for i, r in enumerate(s.receivers):
        if r.name in names:
            raise ConfigError(f"receiver name {r.name!r} is used twice", path=f"receivers[{i}].name")
        names.add(r.name)
        for key in r.templates:
            if key not in template_keys:
                known = ", ".join(sorted(template_keys))
                raise ConfigError(f"unknown template (templates: {known})", path=f"receivers[{i}].templates.{key}")
        if r.digest is not None and not any(PLUGINS[c].digests and t for c, t in r.channels.items()):
            raise ConfigError("a digest is an email; this receiver has no email target", path=f"receivers[{i}].digest")
        if r.actions is not None and s.actions is None:
            raise ConfigError("chat actions are off: give `actions:` at the top level", path=f"receivers[{i}].actions")
    if s.actions is not None:
        if s.alertmanager is None:
            raise ConfigError(
                "chat actions silence through Alertmanager: give `alertmanager: {urls: [...]}`", path="actions"
            )
        bots = {str(t.bot_token) for r in s.receivers for t in r.channels.get("telegram", [])}
        if s.actions.telegram.mode == "webhook" and len(bots) > 1:
            raise ConfigError(
                "one bot can take updates by webhook here; with several Telegram bots use polling",
                path="actions.telegram.mode",
            )
        if s.actions.allowed.empty() and not any(r.actions is not None for r in s.receivers):
            raise ConfigError(
                "nobody may act: list Telegram user ids / @usernames or Slack user ids", path="actions.allowed"
            )

    def walk(route: RouteSettings, path: str) -> None:
        for name in route.all_receivers():
            if name not in names:
                known = ", ".join(sorted(names)) or "none"
                raise ConfigError(f"unknown receiver {name!r} (receivers: {known})", path=f"{path}.receivers")
        for i, m in enumerate(route.matchers):
            try:
                parse_matcher(m)
            except ValueError as exc:
                raise ConfigError(str(exc), path=f"{path}.matchers[{i}]") from None
        wants_digest = route.digest or (route.quiet_hours is not None and route.quiet_hours.mode == "digest")
        for name in route.all_receivers() if wants_digest else []:
            if s.receiver(name).digest is None:
                raise ConfigError(
                    f"receiver {name!r} has no digest: give it `digest: {{schedule: ...}}`", path=f"{path}.receivers"
                )
        if route.quiet_hours and route.quiet_hours.schedule not in s.quiet_hours:
            known = ", ".join(sorted(s.quiet_hours)) or "none"
            raise ConfigError(
                f"unknown schedule {route.quiet_hours.schedule!r} (quiet_hours: {known})",
                path=f"{path}.quiet_hours.schedule",
            )
        for i, child in enumerate(route.routes):
            walk(child, f"{path}.routes[{i}]")

    if not s.routes.all_receivers():
        raise ConfigError("the top-level route needs a default receiver", path="routes.receiver")
    walk(s.routes, "routes")


def _take_targets(data: dict[str, Any]) -> list[dict[str, tuple[Any, str]]]:
    """Each receiver's channel keys (`telegram: [...]`, ...), taken out of the data before it is converted: their
    types come from the channels' registry. Per receiver, in the registry's order: channel -> (raw list, key path)."""
    receivers = data.get("receivers")
    if not isinstance(receivers, list):
        return []
    out: list[dict[str, tuple[Any, str]]] = []
    for i, r in enumerate(receivers):
        taken: dict[str, tuple[Any, str]] = {}
        if isinstance(r, dict):
            if "channels" in r:
                raise ConfigError("unknown key `channels`", path=f"receivers[{i}]")
            for name in PLUGINS:
                if name in r:
                    taken[name] = (r.pop(name), f"receivers[{i}].{name}")
        out.append(taken)
    return out


def _convert(raw: Any, typ: Any, path: str) -> Any:
    """msgspec.convert, its errors named by the full key path."""
    try:
        return msgspec.convert([] if raw is None else raw, typ, dec_hook=_dec_hook, strict=False)
    except msgspec.ValidationError as exc:
        inner, msg = _split_validation_error(exc)
        where = path + (inner if inner.startswith("[") else f".{inner}" if inner else "")
        raise ConfigError(msg, path=where) from None


def _check_named_maps(data: dict[str, Any]) -> None:
    """msgspec cannot name a map's key in its error path; validate named maps one entry at a time."""
    schedules = data.get("quiet_hours")
    if isinstance(schedules, dict):
        for name, value in schedules.items():
            try:
                msgspec.convert(value, ScheduleSettings, dec_hook=_dec_hook, strict=False)
            except msgspec.ValidationError as exc:
                path, msg = _split_validation_error(exc)
                raise ConfigError(msg, path=f"quiet_hours.{name}" + (f".{path}" if path else "")) from None


def load_settings_from_mapping(
    data: Any, *, source: str = "", env: Mapping[str, str] | None = None, base: Path | None = None
) -> Settings:
    """Validate an already-parsed config; the same checks as `load_settings`. With `base` (the config file's
    folder), relative paths in it are that folder's; without, the working directory's."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of keys", source=source)
    environ = os.environ if env is None else env
    notes: list[str] = []
    try:
        data = _switch(data, "", environ, notes)
        data = _substitute(data, "", environ)
        if base is not None:
            data = _anchor(data, base)
        _check_named_maps(data)
        targets = _take_targets(data)
        settings = msgspec.convert(data, Settings, dec_hook=_dec_hook, strict=False)
        for receiver, raw in zip(settings.receivers, targets, strict=True):
            receiver.channels = {
                name: _convert(items, list[PLUGINS[name].target], path)  # type: ignore[misc]  # a list of the type the registry names
                for name, (items, path) in raw.items()
            }
        _check_references(settings)
    except ConfigError as exc:
        raise ConfigError(exc.reason, path=exc.path, source=source) from None
    except msgspec.ValidationError as exc:
        path, msg = _split_validation_error(exc)
        raise ConfigError(msg, path=path, source=source) from None
    if settings.ui is not None and settings.ui.session_secret is not None:
        notes.append("ui.session_secret is no longer needed (sessions are kept in the store); it can go")
    settings.source = source
    settings.notes = notes
    return settings


def load_settings(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Settings:
    """Read, substitute and validate a config file; raise ConfigError naming the file, key path and reason."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the config: {exc.strerror or exc}", source=source) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}not valid YAML: {problem}", source=source) from None
    return load_settings_from_mapping(data, source=source, env=env, base=Path(path).resolve().parent)


_SQLITE_PREFIXES = ("sqlite:///", "sqlite+aiosqlite:///")


def _anchor(data: Any, base: Path, key: str = "") -> Any:
    """Relative paths of a config file are the config file's folder's, as Prometheus and Alertmanager read theirs:
    every `*_file` key, a template's `file`, and a SQLite database in `storage.url` (`sqlite:///data/n.db` is
    data/n.db beside the config; four slashes, `sqlite:////var/lib/n.db`, are an absolute path)."""
    if isinstance(data, dict):
        return {k: _anchor(v, base, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [_anchor(v, base, key) for v in data]
    if not isinstance(data, str) or not data:
        return data
    if (key.endswith("_file") or key == "file") and not os.path.isabs(data):
        return str(base / data)
    if key == "url":
        for prefix in _SQLITE_PREFIXES:
            rest = data[len(prefix) :]
            if data.startswith(prefix) and rest and not rest.startswith("/") and not rest.startswith(":memory:"):
                return prefix + str(base / rest)
    return data


def default_config_path() -> str:
    return os.environ.get("NOTIFIER_CONFIG", DEFAULT_CONFIG)
