"""The configuration's types of access: who may act from the chat and how the chat's requests arrive (actions),
the Alertmanager API that silences go through, and the web view's users. Part of the settings (settings.py
re-exports them), in a module of its own so that each stays readable."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from notifier.configtypes import BasicAuthSettings, Duration, Strict, secret


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


class ChartSettings(Strict, kw_only=True):
    """Charts of an alert's own series, drawn for receivers with `message.chart: true`: the rule's expression from
    Prometheus' `query_range` over the last `range`, at most `max_series` lines; a chart not drawn within `timeout`
    is skipped (the text never waits for it)."""

    prometheus_url: str
    range: Duration = Duration(3600.0)
    max_series: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    timeout: Duration = Duration(5.0)
    bearer_token: str | None = None
    bearer_token_file: str | None = None
    basic_auth: BasicAuthSettings | None = None

    def __post_init__(self) -> None:
        if not self.prometheus_url.startswith(("http://", "https://")):
            raise ValueError(f"prometheus_url: expected an http:// or https:// URL, got {self.prometheus_url!r}")
        self.bearer_token = secret(self.bearer_token, self.bearer_token_file, "bearer_token", required=False)
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("bearer_token: give either bearer_token or basic_auth, not both")
        if not 60 <= float(self.range) <= 7 * 86400:
            raise ValueError("range: expected from 1m to 7d")
        if not 0 < float(self.timeout) <= 60:
            raise ValueError("timeout: expected more than 0s and at most 60s")


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
