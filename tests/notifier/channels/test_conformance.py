"""Every channel keeps the same promises, checked against its fake provider (real HTTP or SMTP on loopback, through
the real SDK): a rate limit gives the provider's retry-after; 5xx and timeouts are retryable, a refusal (4xx, 5xx
SMTP) is permanent; no secret is in any exception's text; `parts_done` is right when a split message fails midway;
every part is within the provider's limits."""

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
from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import SMTPServer
from tests.fakes.telegram import FakeTelegram, check_html, utf16
from tests.helpers import make_group

# loopback only, and the credentials are throwaways: AUTH without TLS is what the fake SMTP server offers
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
RENDERER = Renderer(max_alerts=1000)  # large groups are split into parts, which the tests count


@dataclass
class Provider:
    """One channel's target on its fake, and how to script the fake."""

    name: str
    channel: Channel
    secrets: list[str]
    rate_limit: Callable[[int], None] | None  # answer the next request with a rate limit of n seconds
    server_error: Callable[[], None]
    refuse: Callable[[], None]  # a refusal no retry can fix
    slow: Callable[[float], None]  # answer later than the target's timeout
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
        lambda: [m.message.get_body(("plain",)).get_content() for m in smtp.handler.messages],
    )


ALL = ["telegram", "slack-webhook", "slack-api", "email"]
SPLIT = ["telegram", "slack-webhook", "slack-api"]  # an email is one message, whatever its size
RATE_LIMITED = SPLIT  # SMTP has no rate-limit answer with a wait: a 4xx there is a retry with back-off


@pytest.fixture
async def providers(fake_telegram: FakeTelegram, fake_slack: FakeSlack) -> AsyncIterator[Callable[[str], Provider]]:
    password = "sm7p-pa55w0rd"
    smtp = SMTPServer(user="alerts", password=password).start()
    made: list[Provider] = []

    def make(name: str) -> Provider:
        p = {
            "telegram": lambda: _tg(fake_telegram),
            "slack-webhook": lambda: _slack_hook(fake_slack),
            "slack-api": lambda: _slack_api(fake_slack),
            "email": lambda: _email(smtp, password),
        }[name]()
        made.append(p)
        return p

    yield make
    for p in made:
        await p.channel.aclose()
    smtp.stop()


async def _fails(p: Provider, m: Message) -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        await p.channel.send(m)
    for secret in p.secrets:
        assert secret not in str(info.value), p.name
    return info.value


@pytest.mark.parametrize("name", RATE_LIMITED)
async def test_a_rate_limit_gives_the_providers_retry_after(providers: Callable[[str], Provider], name: str) -> None:
    provider = providers(name)
    assert provider.rate_limit is not None
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
    provider.refuse()
    exc = await _fails(provider, message())
    assert isinstance(exc, PermanentError) and not isinstance(exc, RetryableError)
    await provider.channel.send(message())  # the next one goes through
    assert len(provider.delivered()) == 1


@pytest.mark.parametrize("name", ALL)
async def test_a_timeout_is_retryable(providers: Callable[[str], Provider], name: str) -> None:
    provider = providers(name)
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


def _fields(m: Message) -> dict[str, Any]:
    return {f: getattr(m, f) for f in m.__slots__}  # type: ignore[attr-defined]
