"""The configuration's types: what every key means and what values it takes, each checked as it is read (a
struct's __post_init__ raises ValueError naming the key). A leaf of the notifier: it imports only value types and
parsers (configtypes, matchers, digest schedules), so that any module may read settings. Reading a file -- YAML,
${ENV} substitution, only_if_set, relative paths, each channel's targets, references between keys -- is
config.py's."""

from __future__ import annotations

import ipaddress
import itertools
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from notifier.configtypes import (
    DEFAULT_HIDDEN_LABELS,
    DEFAULT_MAX_ALERTS,
    DEFAULT_MAX_PARTS,
    BasicAuthSettings,
    Duration,
    Secret,
    Strict,
    parse_duration,
    parse_weekdays,
    read_secret_file,
    secret,
)
from notifier.digest_schedule import DigestSchedule
from notifier.settings_access import (
    SLACK_RESPONSE_URLS,
    ActionsSettings,
    AlertmanagerSettings,
    AllowedActors,
    ChartSettings,
    ReceiverActions,
    SlackInteractivity,
    TelegramUpdates,
    UISettings,
    UIUser,
)

__all__ = [
    "SLACK_RESPONSE_URLS",
    "ActionsSettings",
    "AlertmanagerSettings",
    "AllowedActors",
    "BasicAuthSettings",
    "ChartSettings",
    "Duration",
    "ReceiverActions",
    "Secret",
    "SlackInteractivity",
    "TelegramUpdates",
    "UISettings",
    "UIUser",
    "parse_duration",
    "read_secret_file",
]

MIN_ESCALATION = 10.0  # seconds: an escalation step's or the watchdog's shortest wait (so that tests run fast)
MAX_ESCALATION = 7 * 86400.0


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
    chart: bool = False  # a chart of the alerts' series follows a firing group's message (needs `charts:`)
    timezone: str = "UTC"  # the time zone of the chart's clock

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from None


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


class EscalationStep(Strict, kw_only=True):
    """One step of a route's escalation: `after` this long from the group's first message to the route's receivers,
    still firing and neither acknowledged nor silenced, the group goes to `receivers` too."""

    after: Duration
    receivers: Annotated[list[str], msgspec.Meta(min_length=1)]
    quiet_hours: Literal["ignore", "respect"] = "ignore"  # respect: the route's quiet hours hold the step back

    def __post_init__(self) -> None:
        if not MIN_ESCALATION <= float(self.after) <= MAX_ESCALATION:
            raise ValueError("after: expected from 10s to 7d")


class RouteSettings(Strict, kw_only=True):
    matchers: list[str] = msgspec.field(default_factory=list)
    receiver: str | None = None
    receivers: list[str] = msgspec.field(default_factory=list)
    routes: list[RouteSettings] = msgspec.field(default_factory=list)
    continue_: bool = msgspec.field(default=False, name="continue")
    quiet_hours: RouteQuietHours | None = None
    repeat_interval: Duration | None = None
    digest: bool = False  # everything this route sends goes into its receivers' digests
    # the steps of this route's own receivers (not inherited by child routes), each later than the one before
    escalation: list[EscalationStep] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        for i, (a, b) in enumerate(itertools.pairwise(self.escalation)):
            if float(b.after) <= float(a.after):
                raise ValueError(f"escalation[{i + 1}].after: each step comes after the one before it")

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


class WatchdogSettings(Strict, kw_only=True):
    """Prometheus' always-firing Watchdog alert, expected through Alertmanager at least every `expect_every` from
    each of its sources (each label set): when one stops, `receivers` are told directly, and again when it is back.
    The Watchdog itself is never sent as an alert."""

    alertname: str = "Watchdog"
    expect_every: Duration = Duration(300.0)
    receivers: Annotated[list[str], msgspec.Meta(min_length=1)]

    def __post_init__(self) -> None:
        if float(self.expect_every) < MIN_ESCALATION:
            raise ValueError("expect_every: expected at least 10s")


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
    watchdog: WatchdogSettings | None = None
    alertmanager: AlertmanagerSettings | None = None
    actions: ActionsSettings | None = None
    ui: UISettings | None = None
    charts: ChartSettings | None = None
    source: str = ""  # the file this came from; not a config key
    notes: list[str] = msgspec.field(default_factory=list)  # what `only_if_set` switched off; not a config key

    def receiver(self, name: str) -> ReceiverSettings:
        for r in self.receivers:
            if r.name == name:
                return r
        raise KeyError(name)
