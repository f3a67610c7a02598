"""Templates: escaping per markup, length-aware assembly, overrides, durations and links (pure)."""

from __future__ import annotations

import json

import pytest

from notifier.alertmanager import decode_payload, to_group
from notifier.channels import email as email_channel
from notifier.channels import log as log_channel
from notifier.channels import slack as slack_channel
from notifier.channels import telegram as telegram_channel
from notifier.channels.slack import SLACK_MAX_SECTION
from notifier.channels.telegram import utf16_len
from notifier.domain import Message
from notifier.templates import Renderer, escape_mrkdwn
from notifier.templates.context import format_duration, silence_url
from tests.fakes.slack import check_blocks
from tests.fakes.telegram import check_html
from tests.helpers import fixture_bytes, make_group

NOW = 1795668000.0  # 2026-11-26T04:40:00Z


def message(body: dict[str, object] | bytes) -> Message:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Message(delivery_id="d", receiver="r", target="r/telegram/0", group=to_group(decode_payload(raw)))


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5s"), (125, "2m"), (3600, "1h"), (3660 * 2, "2h 2m"), (86400 * 2 + 3600 * 3, "2d 3h")]
)
def test_durations(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_firing_and_resolved_durations_and_links() -> None:
    r = Renderer()
    fire = check_html(telegram_channel.render(r, message(fixture_bytes("01-critical-firing-two-alerts.json")), NOW)[0])
    assert "firing for 34m" in fire
    res = check_html(telegram_channel.render(r, message(fixture_bytes("04-critical-all-resolved.json")), NOW)[0])
    assert "resolved after 12s" in res
    body = make_group(1)
    body["alerts"][0]["annotations"].update(runbook_url="https://runbooks/x", dashboard_url="https://grafana/d/1")
    html = telegram_channel.render(r, message(body), NOW)[0]
    for name in ("Graph", "Runbook", "Dashboard", "Silence"):
        assert f">{name}</a>" in html
    assert 'href="https://runbooks/x"' in html


def test_silence_link_prefills_the_labels() -> None:
    url = silence_url("http://am:9093/", {"alertname": "X", "bot": "grid-btc"})
    assert url == "http://am:9093/#/silences/new?filter=%7Balertname%3D%22X%22%2Cbot%3D%22grid-btc%22%7D"
    assert silence_url("", {"a": "b"}) == ""


def test_severities_look_different() -> None:
    r = Renderer()
    heads = {
        sev: telegram_channel.render(r, message(make_group(1, severity=sev)), NOW)[0].split("\n")[0]
        for sev in ("critical", "warning", "info")
    }
    assert heads["critical"].startswith("🔴") and heads["warning"].startswith("🟠") and heads["info"].startswith("🔵")
    assert (
        len(
            {
                p.color
                for sev in ("critical", "warning", "info")
                for p in slack_channel.render(r, message(make_group(1, severity=sev)), NOW)
            }
        )
        == 3
    )


def test_mrkdwn_escaping() -> None:
    assert escape_mrkdwn('<script>&"x"') == '&lt;script&gt;&amp;"x"'
    body = make_group(1)
    body["alerts"][0]["annotations"]["summary"] = "<!channel> & <http://evil|click>"
    text = json.dumps([p.payload() for p in slack_channel.render(Renderer(), message(body), NOW)])
    assert "<!channel>" not in text and "&lt;!channel&gt; &amp; &lt;http://evil|click&gt;" in text


def test_huge_annotations_are_clipped_not_split_inside_markup() -> None:
    body = make_group(1)
    body["alerts"][0]["annotations"]["description"] = "<b>" * 3000
    parts = telegram_channel.render(Renderer(), message(body), NOW)
    assert len(parts) == 1
    assert utf16_len(check_html(parts[0])) <= 4096


def test_beyond_max_parts_the_last_part_says_how_many_more() -> None:
    r = Renderer(max_parts=2)
    parts = telegram_channel.render(r, message(make_group(400)), NOW)
    assert len(parts) == 2
    last = check_html(parts[-1])
    assert "more alerts" in last
    shown = sum(1 for i in range(400) if f"bot-{i:03d}" in "".join(check_html(p) for p in parts))
    more = int(last.split("+")[-1].split(" more alerts")[0])
    assert shown + more == 400


def test_slack_parts_respect_block_kit_limits() -> None:
    for p in slack_channel.render(Renderer(), message(make_group(500)), NOW):
        check_blocks(p.blocks)
        assert all(len(b["text"]["text"]) <= SLACK_MAX_SECTION for b in p.blocks if b["type"] == "section")


def test_overrides_replace_only_what_they_define() -> None:
    t = {"telegram": "{% macro alert(a, detail) %}ALERT {{ a.name }}{% endmacro %}"}
    text = telegram_channel.render(Renderer(t), message(make_group(2)), NOW)[0]
    assert "ALERT LargeDrawdown" in text and "WARNING" in text  # default header kept


def test_templates_are_sandboxed_and_strict() -> None:
    with pytest.raises(ValueError, match="does not compile"):
        Renderer({"log": "{% for %}"}, [log_channel.TEMPLATE])
    r = Renderer({"log": "{{ ''.__class__.__mro__ }}"})
    from jinja2.exceptions import SecurityError

    with pytest.raises(SecurityError):
        log_channel.render(r, message(make_group(1)), NOW)
    r = Renderer({"log": "{{ nope }}"})
    from jinja2 import UndefinedError

    with pytest.raises(UndefinedError):
        log_channel.render(r, message(make_group(1)), NOW)


def test_email_subject_is_one_line_and_html_autoescaped() -> None:
    body = make_group(3, severity="critical")
    body["alerts"][0]["labels"]["bot"] = "<b>x</b>"
    e = email_channel.render(Renderer(), message(body), NOW)
    assert "\n" not in e.subject and e.subject.startswith("[CRITICAL]")
    assert "&lt;b&gt;x&lt;/b&gt;" in e.html and "<b>x</b>" in e.text


def test_templates_are_compiled_at_start_and_once_for_all_receivers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiling a template takes tens of milliseconds and holds the GIL. Compiled per receiver at its first
    message, it held back the first message of every receiver after a start, and the webhooks waiting on the event
    loop with it. Now every receiver's templates are compiled when the notifier starts, and receivers with the
    same template share one compiled copy."""
    from importlib.resources import files

    from jinja2.sandbox import SandboxedEnvironment

    from notifier import templates as templates_module
    from notifier.channels.registry import renderer_for
    from tests.helpers import settings_from

    compiled: list[str] = []
    real = SandboxedEnvironment.from_string

    def counting(self: SandboxedEnvironment, source: str, *args: object, **kwargs: object) -> object:
        compiled.append(source)
        return real(self, source, *args, **kwargs)  # type: ignore[arg-type]

    # as in a process that has compiled nothing yet
    monkeypatch.setattr(templates_module, "_COMPILED", {}, raising=False)
    monkeypatch.setattr(SandboxedEnvironment, "from_string", counting)
    own = "{% macro alert(a, detail) %}OWN {{ a.name }}{% endmacro %}"
    receivers = [{"name": f"team{i}", "telegram": [{"bot_token": "1:x", "chat_id": 100 + i}]} for i in range(20)] + [
        {"name": "own", "telegram": [{"bot_token": "1:x", "chat_id": 1}], "templates": {"telegram": {"inline": own}}}
    ]
    settings = settings_from({"receivers": receivers, "routes": {"receiver": "team0"}}, "sqlite://")
    renderers = {r.name: renderer_for(r) for r in settings.receivers}
    default = (files("notifier.templates") / telegram_channel.TEMPLATE.default).read_text(encoding="utf-8")
    assert sorted(compiled) == sorted([default, own])  # two, not one per receiver
    at_start = len(compiled)
    for name, renderer in renderers.items():
        text = telegram_channel.render(renderer, message(make_group(2)), NOW)[0]
        assert ("OWN LargeDrawdown" in text) == (name == "own") and "WARNING" in text
    assert len(compiled) == at_start  # no receiver's first message compiled anything
