"""ntfy and Pushover against their strict fakes, beyond what every channel promises (test_conformance): priorities by
severity, a silent message quiet, ntfy's click link and Silence action and both of its auth kinds, Pushover's
emergency with its receipt, the receipt read back, a resolve cancelling the emergency's repeats, and a used-up
monthly quota waiting for its renewal; the configs refuse what the services would."""

from __future__ import annotations

import json
import time

import pytest

from notifier.alertmanager import decode_payload, to_group
from notifier.channels.ntfy import NtfyTarget
from notifier.channels.pushover import RECEIPT_PREFIX, PushoverTarget, group_tag
from notifier.channels.registry import PLUGINS
from notifier.clock import SystemClock
from notifier.config import load_settings_from_mapping
from notifier.configtypes import Duration
from notifier.domain import Message
from notifier.errors import ConfigError, PermanentError, RetryableError
from notifier.templates import Renderer
from tests.fakes.push import FakeNtfy, FakePushover
from tests.helpers import make_group

RENDERER = Renderer()


def message(severity: str = "warning", status: str = "firing", silent: bool = False) -> Message:
    body = make_group(2, status=status, severity=severity, name="LargeDrawdown")
    body["externalURL"] = "http://am.example"
    return Message(
        delivery_id="d",
        receiver="r",
        target="r/x/0",
        group=to_group(decode_payload(json.dumps(body).encode())),
        silent=silent,
    )


async def test_ntfy_sends_a_priority_by_severity_a_link_and_a_silence_action(ntfy: FakeNtfy) -> None:
    target = NtfyTarget(server=ntfy.url, topic="trading-oncall", token=ntfy.token)
    channel = PLUGINS["ntfy"].build("r/ntfy/0", target, RENDERER, SystemClock())
    try:
        await channel.send(message("warning"))
        await channel.send(message("critical"))
        await channel.send(message("warning", silent=True))
        await channel.send(message("warning", status="resolved"))
    finally:
        await channel.aclose()
    warning, critical, quiet, resolved = ntfy.published
    assert (warning.priority, critical.priority, quiet.priority, resolved.priority) == (4, 5, 2, 2)
    assert warning.tags == ["warning"] and critical.tags == ["rotating_light"] and resolved.tags == ["white_check_mark"]
    assert warning.title.startswith("🟠 WARNING: LargeDrawdown") and "LargeDrawdown" in warning.message
    assert warning.click and warning.click.startswith("http://am.example")
    assert warning.actions[0]["label"] == "Silence" and "silences/new" in warning.actions[0]["url"]
    assert resolved.actions == []  # nothing to silence once resolved


async def test_ntfy_basic_auth_works_and_a_wrong_token_is_refused_without_a_secret(ntfy: FakeNtfy) -> None:
    basic = NtfyTarget(server=ntfy.url, topic="trading-oncall", username=ntfy.username, password=ntfy.password)
    wrong = NtfyTarget(server=ntfy.url, topic="trading-oncall", token="tk_" + "w" * 29)
    good = PLUGINS["ntfy"].build("r/ntfy/0", basic, RENDERER, SystemClock())
    bad = PLUGINS["ntfy"].build("r/ntfy/1", wrong, RENDERER, SystemClock())
    try:
        await good.send(message())
        with pytest.raises(PermanentError) as info:
            await bad.send(message())
    finally:
        await good.aclose()
        await bad.aclose()
    assert len(ntfy.published) == 1
    assert "ntfy answered 403" in str(info.value)
    assert "trading-oncall" not in str(info.value) and "tk_" not in str(info.value)


async def test_pushover_critical_is_an_emergency_whose_receipt_is_read_and_whose_resolve_cancels_it(
    pushover: FakePushover,
) -> None:
    target = PushoverTarget(
        token=pushover.token, user=pushover.user, api_url=pushover.url, retry=Duration(30), expire=Duration(600)
    )
    channel = PLUGINS["pushover"].build("r/pushover/0", target, RENDERER, SystemClock())
    try:
        warning = await channel.send(message("warning"))
        emergency = await channel.send(message("critical"))
        assert not (warning.ref or "").startswith(RECEIPT_PREFIX)
        assert emergency.ref and emergency.ref.startswith(RECEIPT_PREFIX)
        receipt = emergency.ref.removeprefix(RECEIPT_PREFIX)
        assert pushover.receipts[receipt].tag == group_tag(message("critical").group.group_key)
        assert await channel.acknowledgement(emergency.ref) is None  # type: ignore[attr-defined]
        pushover.acknowledge(receipt, by="k" * 30, device="phone")
        ack = await channel.acknowledgement(emergency.ref)  # type: ignore[attr-defined]
        assert ack is not None and ack.by == "Pushover kkkkkkkk… (phone)" and abs(ack.at - time.time()) < 5
        await channel.send(message("critical", status="resolved"))
    finally:
        await channel.aclose()
    sent_warning, sent_emergency, sent_resolved = pushover.pushed
    assert (sent_warning.priority, sent_emergency.priority, sent_resolved.priority) == (1, 2, -1)
    assert pushover.receipts[receipt].cancelled


async def test_pushover_waits_for_its_quota_and_refuses_a_bad_user_for_good(pushover: FakePushover) -> None:
    target = PushoverTarget(token=pushover.token, user=pushover.user, api_url=pushover.url)
    wrong = PushoverTarget(token=pushover.token, user="x" * 30, api_url=pushover.url)
    channel = PLUGINS["pushover"].build("r/pushover/0", target, RENDERER, SystemClock())
    bad = PLUGINS["pushover"].build("r/pushover/1", wrong, RENDERER, SystemClock())
    try:
        pushover.fail_next(1, 429)
        with pytest.raises(RetryableError) as info:
            await channel.send(message())
        assert info.value.retry_after is not None and 3500 < info.value.retry_after <= 3600
        with pytest.raises(PermanentError) as refused:
            await bad.send(message())
    finally:
        await channel.aclose()
        await bad.aclose()
    assert not isinstance(refused.value, RetryableError)
    assert "user identifier is not a valid user" in str(refused.value) and "x" * 30 not in str(refused.value)


def test_the_config_refuses_what_the_services_would() -> None:
    def load(target: dict[str, object], kind: str) -> None:
        load_settings_from_mapping({"receivers": [{"name": "r", kind: [target]}], "routes": {"receiver": "r"}}, env={})

    with pytest.raises(ConfigError) as info:
        load({"topic": "no spaces allowed"}, "ntfy")
    assert info.value.path == "receivers[0].ntfy[0].topic"
    with pytest.raises(ConfigError) as info:
        load({"topic": "t", "token": "tk_x", "username": "u", "password": "p"}, "ntfy")
    assert "either token or username" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load({"token": "a" * 30, "user": "u" * 30, "retry": "10s"}, "pushover")
    assert "retry" in str(info.value) and "30s" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load({"token": "a" * 30, "user": "u" * 30, "expire": "5h"}, "pushover")
    assert "expire" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load({"token": "a" * 30}, "pushover")
    assert "user" in str(info.value)
