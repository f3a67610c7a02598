"""Every channel of the registry keeps the same promises, checked against its fake provider (real HTTP or SMTP on
loopback, through the real SDK; for the log, the stream it writes to): a rate limit gives the provider's
retry-after; 5xx, timeouts and a stream that cannot be written are retryable, a refusal (4xx, 5xx SMTP) is
permanent; no secret is in any exception's text; `parts_done` is right when a split message fails midway; every part
is within the provider's limits; a channel that cannot edit says so as a permanent failure. The list of channels is
the registry's: a channel without a fake here fails `test_every_channel_of_the_registry_has_a_fake`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from notifier.alertmanager import decode_payload, to_group
from notifier.channels import Channel
from notifier.channels.registry import PLUGINS
from notifier.clock import SystemClock
from notifier.domain import Message
from notifier.errors import DeliveryError, PermanentError, RetryableError
from notifier.templates import Renderer
from tests.fakes.push import FakeNtfy, FakePushover
from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import SMTPServer, mail_text
from tests.fakes.telegram import FakeTelegram, check_html, utf16
from tests.helpers import make_group

# loopback only, and the credentials are throwaways: AUTH without TLS is what the fake SMTP server offers
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
RENDERER = Renderer(max_alerts=1000)  # large groups are split into parts, which the tests count


@dataclass
class Provider:
    """One channel's target on its fake, and how to script the fake (None: the provider has no such answer)."""

    name: str
    channel: Channel
    secrets: list[str]
    rate_limit: Callable[[int], None] | None  # answer the next request with a rate limit of n seconds
    server_error: Callable[[], None]
    refuse: Callable[[], None] | None  # a refusal no retry can fix
    slow: Callable[[float], None] | None  # answer later than the target's timeout
    pass_next: Callable[[int], None] | None  # answer n requests normally before the scripted failure
    delivered: Callable[[], list[str]]  # what arrived, as text


def message(n: int = 2) -> Message:
    group = to_group(decode_payload(json.dumps(make_group(n, severity="critical")).encode()))
    return Message(delivery_id="d", receiver="r", target="r/x/0", group=group)


def _tg(fake: FakeTelegram) -> Provider:
    target = PLUGINS["telegram"].target(bot_token=fake.token, chat_id=42, api_url=fake.url, timeout=1)
    return Provider(
        "telegram",
        PLUGINS["telegram"].build("r/telegram/0", target, RENDERER, SystemClock()),
        [fake.token],
        lambda s: fake.fail_next(1, 429, f"Too Many Requests: retry after {s}", retry_after=s),
        lambda: fake.fail_next(1, 502, "Bad Gateway"),
        lambda: fake.fail_next(1, 403, "Forbidden: bot was kicked from the group chat"),
        lambda s: setattr(fake, "delay", s),
        fake.pass_next,
        lambda: [check_html(m.text) for m in fake.sent],
    )


def _slack_hook(fake: FakeSlack) -> Provider:
    target = PLUGINS["slack"].target(webhook_url=fake.webhook_url, timeout=1)
    return Provider(
        "slack-webhook",
        PLUGINS["slack"].build("r/slack/0", target, RENDERER, SystemClock()),
        [fake.webhook_url, fake.hook_path],
        lambda s: fake.fail_next(1, 429, retry_after=s),
        lambda: fake.fail_next(1, 503),
        lambda: fake.fail_next(1, 404, error="no_service"),
        lambda s: setattr(fake, "delay", s),
        fake.pass_next,
        lambda: [p.all_text for p in fake.posted],
    )


def _slack_api(fake: FakeSlack) -> Provider:
    target = PLUGINS["slack"].target(bot_token=fake.token, channel="#trading-alerts", api_url=fake.api_url, timeout=1)
    return Provider(
        "slack-api",
        PLUGINS["slack"].build("r/slack/1", target, RENDERER, SystemClock()),
        [fake.token],
        lambda s: fake.fail_next(1, 429, retry_after=s),
        lambda: fake.fail_next(1, 500),
        lambda: fake.fail_next(1, 200, error="channel_not_found"),
        lambda s: setattr(fake, "delay", s),
        fake.pass_next,
        lambda: [p.all_text for p in fake.posted],
    )


def _email(smtp: SMTPServer, password: str) -> Provider:
    target = PLUGINS["email"].target(
        host="127.0.0.1",
        port=smtp.port,
        tls="none",
        username="alerts",
        password=password,
        from_="alerts@example.com",
        to=["oncall@example.com"],
        timeout=1,
    )
    return Provider(
        "email",
        PLUGINS["email"].build("r/email/0", target, RENDERER, SystemClock()),
        [password],
        None,  # SMTP has no rate-limit answer with a wait; a 4xx is a retry with back-off
        lambda: smtp.handler.fail_with.append("451 4.3.0 try again later"),
        lambda: smtp.handler.fail_with.append("550 5.7.1 relaying denied"),
        lambda s: setattr(smtp.handler, "delay", s),
        None,  # one email is one part
        lambda: [mail_text(m.message, "plain") for m in smtp.handler.messages],
    )


def _ntfy(fake: FakeNtfy) -> Provider:
    target = PLUGINS["ntfy"].target(server=fake.url, topic="trading-oncall", token=fake.token, timeout=1)
    return Provider(
        "ntfy",
        PLUGINS["ntfy"].build("r/ntfy/0", target, RENDERER, SystemClock()),
        [fake.token, "trading-oncall"],
        lambda s: fake.fail_next(1, 429, retry_after=s),
        lambda: fake.fail_next(1, 502),
        lambda: fake.fail_next(1, 403, error="forbidden"),
        lambda s: setattr(fake, "delay", s),
        None,  # a push is one part
        lambda: [m.text for m in fake.published],
    )


def _pushover(fake: FakePushover) -> Provider:
    target = PLUGINS["pushover"].target(token=fake.token, user=fake.user, api_url=fake.url, timeout=1)
    return Provider(
        "pushover",
        PLUGINS["pushover"].build("r/pushover/0", target, RENDERER, SystemClock()),
        [fake.token, fake.user],
        None,  # its 429 is the monthly quota: the wait is until the quota renews, not a retry-after
        lambda: fake.fail_next(1, 503),
        lambda: fake.fail_next(1, 400, error="user identifier is invalid"),
        lambda s: setattr(fake, "delay", s),
        None,  # a push is one part
        lambda: [m.text for m in fake.pushed],
    )


class Stream:
    """What the log channel writes to, standing in for stdout: it keeps what it gets, or fails once when told."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.broken = False

    def write(self, text: str) -> int:
        if self.broken:
            self.broken = False
            raise BrokenPipeError("the reader went away")
        self.written.append(text)
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False


def _log(stream: Stream) -> Provider:
    target = PLUGINS["log"].target(format="json")
    return Provider(
        "log",
        PLUGINS["log"].build("r/log/0", target, RENDERER, SystemClock()),
        [],
        None,  # a stream has no rate limit
        lambda: setattr(stream, "broken", True),
        None,  # nothing a stream says is final
        None,  # nor slow
        None,  # one line is one part
        lambda: [json.loads(line)["text"] for line in stream.written],
    )


# channel of the registry -> the ways its targets reach a provider, each with its fake
FAKES: dict[str, list[str]] = {
    "telegram": ["telegram"],
    "slack": ["slack-webhook", "slack-api"],
    "email": ["email"],
    "ntfy": ["ntfy"],
    "pushover": ["pushover"],
    "log": ["log"],
}
ALL = [variant for name in PLUGINS for variant in FAKES.get(name, [])]
SPLIT = [v for name, p in PLUGINS.items() if p.capabilities.splits for v in FAKES.get(name, [])]
NO_EDIT = [v for name, p in PLUGINS.items() if not p.capabilities.edit for v in FAKES.get(name, [])]


def test_every_channel_of_the_registry_has_a_fake() -> None:
    assert set(FAKES) == set(PLUGINS), "a channel needs its fake here, so that it keeps the promises above"


@pytest.fixture
async def providers(
    fake_telegram: FakeTelegram, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[[str], Provider]]:
    ntfy = await FakeNtfy().start()
    pushover = await FakePushover().start()
    password = "sm7p-pa55w0rd"
    smtp = SMTPServer(user="alerts", password=password).start()
    stream = Stream()
    made: list[Provider] = []

    def log_provider() -> Provider:
        monkeypatch.setattr("sys.stdout", stream)  # in the test itself: pytest's capture swaps stdout per phase
        return _log(stream)

    def make(name: str) -> Provider:
        p = {
            "telegram": lambda: _tg(fake_telegram),
            "slack-webhook": lambda: _slack_hook(fake_slack),
            "slack-api": lambda: _slack_api(fake_slack),
            "email": lambda: _email(smtp, password),
            "ntfy": lambda: _ntfy(ntfy),
            "pushover": lambda: _pushover(pushover),
            "log": log_provider,
        }[name]()
        made.append(p)
        return p

    yield make
    for p in made:
        await p.channel.aclose()
    smtp.stop()
    await ntfy.stop()
    await pushover.stop()


async def _fails(p: Provider, m: Message) -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        await p.channel.send(m)
    for secret in p.secrets:
        assert secret not in str(info.value), p.name
    return info.value


@pytest.mark.parametrize("name", ALL)
async def test_a_rate_limit_gives_the_providers_retry_after(providers: Callable[[str], Provider], name: str) -> None:
    provider = providers(name)
    if provider.rate_limit is None:
        return  # SMTP and a stream have no rate-limit answer with a wait (SMTP's 4xx is a retry with back-off)
    provider.rate_limit(7)
    exc = await _fails(provider, message())
    assert isinstance(exc, RetryableError) and exc.retry_after == 7


@pytest.mark.parametrize("name", ALL)
async def test_a_server_error_is_retryable_and_a_refusal_permanent(
    providers: Callable[[str], Provider], name: str
) -> None:
    provider = providers(name)
    provider.server_error()
    assert isinstance(await _fails(provider, message()), RetryableError)
    if provider.refuse is not None:
        provider.refuse()
        exc = await _fails(provider, message())
        assert isinstance(exc, PermanentError) and not isinstance(exc, RetryableError)
    await provider.channel.send(message())  # the next one goes through
    assert len(provider.delivered()) == 1


@pytest.mark.parametrize("name", ALL)
async def test_a_timeout_is_retryable(providers: Callable[[str], Provider], name: str) -> None:
    provider = providers(name)
    if provider.slow is None:
        return  # a stream answers at once
    provider.slow(2.5)  # the targets wait 1 s
    assert isinstance(await _fails(provider, message()), RetryableError)


@pytest.mark.parametrize("name", SPLIT)
async def test_parts_done_counts_the_parts_delivered_before_a_failure(
    providers: Callable[[str], Provider], name: str
) -> None:
    provider = providers(name)
    assert provider.pass_next is not None
    m = Message(**{**_fields(message(300)), "group": message(300).group})
    provider.pass_next(1)
    provider.server_error()
    exc = await _fails(provider, m)
    assert isinstance(exc, RetryableError) and exc.parts_done == 1
    delivered_before = len(provider.delivered())
    receipt = await provider.channel.send(Message(**{**_fields(m), "part": 1}))  # the retry starts at part 2
    sent = provider.delivered()[delivered_before:]
    assert receipt.parts == len(sent) + 1 > 2


@pytest.mark.parametrize("name", ALL)
async def test_every_part_is_within_the_providers_limits(providers: Callable[[str], Provider], name: str) -> None:
    provider = providers(name)
    await provider.channel.send(message(300))
    texts = provider.delivered()
    assert texts
    if provider.name == "telegram":
        assert all(utf16(t) <= 4096 for t in texts)  # the fake refuses what Telegram refuses; these arrived
    if provider.name in ("ntfy", "pushover"):  # one push, cut where the service's limit is, and saying so
        assert len(texts) == 1 and "cut: open Alertmanager" in texts[0]


@pytest.mark.parametrize("name", NO_EDIT)
async def test_a_channel_that_cannot_edit_says_so_for_good(providers: Callable[[str], Provider], name: str) -> None:
    provider = providers(name)
    edit = Message(**{**_fields(message()), "edit_ref": "1"})
    with pytest.raises(PermanentError):
        await provider.channel.edit(edit)


def _fields(m: Message) -> dict[str, Any]:
    return {f: getattr(m, f) for f in m.__slots__}
