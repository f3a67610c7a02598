"""Hostile alert data through every channel's rendering, checked against each channel's invariants: Slack text holds
no mention, channel or link that came from alert data; Telegram HTML parses strictly and every tag is the template's;
email headers are one line; every part fits its provider's limit; every link is http(s)."""

from __future__ import annotations

import json
import re
from email.message import EmailMessage
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier.alertmanager import PayloadError, decode_payload, to_group
from notifier.channels import log as log_channel
from notifier.channels import slack as slack_channel
from notifier.channels import telegram as telegram_channel
from notifier.channels.slack import SLACK_MAX_SECTION, SlackPart
from notifier.channels.telegram import utf16_len
from notifier.clock import SystemClock
from notifier.domain import Message
from notifier.templates import Renderer
from tests.fakes.slack import check_blocks
from tests.fakes.smtp import mail_text
from tests.fakes.telegram import check_html
from tests.helpers import make_group

NOW = 1795668000.0
INVISIBLE = "\u202e\u200b\u200c\u200d\u2066\u2069\ufeff\u061c"
HOSTILE = [
    "<!channel> <@U123ABC> <http://evil.example|click me>",
    "<!here|here> <#C0123|general> <!subteam^S0123>",
    "`code` ``` *bold* _it_ ~st~ &amp; &lt;",
    "<script>alert(1)</script> <b>bold</b> </code> <a href='x'>",
    "javascript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD4=",
    "line1\r\nBcc: victim@example.com\nSubject: x",
    "\u202egnp.exe\u202c \u200bzero\u200dwidth\ufeff",
    "\x1b[31mred\x1b[0m \x07 \x7f \x85",
    "🔴" * 300,
    "x" * 5000,
    "&" * 3000,
    "\U0001f600" * 2100,  # outside the BMP: two UTF-16 units each
]
BAD_URLS = ["javascript:alert(1)", "data:text/html,<b>x</b>", "vbscript:x", "JAVASCRIPT:alert(1)", " javascript:x", ""]
TEMPLATE_LINK_NAMES = {"Graph", "Runbook", "Dashboard", "Silence", "see Alertmanager"}
TELEGRAM_TAGS = {"b", "i", "code", "a"}

SURROGATES: tuple[Literal["Cs"]] = ("Cs",)  # lone surrogates cannot be encoded


def _message(body: dict[str, Any]) -> Message:
    return Message(delivery_id="d", receiver="r", target="t", group=to_group(decode_payload(json.dumps(body).encode())))


def _hostile_group(value: str, url: str, n: int = 3) -> dict[str, Any]:
    body = make_group(n, severity="critical")
    for a in body["alerts"]:
        a["labels"].update(alertname=value, bot=value, extra=value, **{value[:40] or "k": value})
        a["annotations"].update(summary=value, description=value, runbook_url=url, dashboard_url=url)
        a["generatorURL"] = url
    body["commonLabels"] = {"alertname": value, "severity": "critical"}
    body["groupLabels"] = {"alertname": value}
    body["commonAnnotations"] = {"summary": value}
    body["externalURL"] = url
    return body


def check_telegram(parts: list[str]) -> None:
    assert parts
    for p in parts:
        visible = check_html(p)  # the strict parser: only Telegram's tags, balanced, only its entities
        assert 0 < utf16_len(visible) <= 4096  # Telegram counts the parsed text
        tags = set(re.findall(r"</?([a-zA-Z][a-zA-Z0-9-]*)", p))
        assert tags <= TELEGRAM_TAGS, tags
        for href in re.findall(r'<a href="([^"]*)"', p):
            assert href.startswith(("http://", "https://")), href
        assert not any(c in visible for c in INVISIBLE)
        assert "\x1b" not in visible and "\r" not in visible


def _mrkdwn_texts(part: SlackPart) -> list[str]:
    texts = [part.text]
    for b in part.blocks:
        if b["type"] == "section" or (b["type"] == "context"):
            texts += [b["text"]["text"]] if "text" in b else [e["text"] for e in b["elements"]]
    return texts


def check_slack(parts: list[SlackPart]) -> None:
    assert parts
    for p in parts:
        check_blocks(p.blocks)
        assert p.fits()
        assert all(len(b["text"]["text"]) <= SLACK_MAX_SECTION for b in p.blocks if b["type"] == "section")
        for text in _mrkdwn_texts(p):
            for seq in re.findall(r"<([^>]*)>", text):
                # the only <...> sequences are the template's own links, to http(s) addresses
                url, _, name = seq.partition("|")
                assert url.startswith(("http://", "https://")) and name in TEMPLATE_LINK_NAMES, seq
            assert "<!" not in text and "<@" not in text and "<#" not in text
            assert not any(c in text for c in INVISIBLE)
            # code spans hold no backtick of the data's: every span the template opens, it closes on the same line
            for line in text.split("\n"):
                assert line.count("`") % 2 == 0, line


def check_email(msg: EmailMessage) -> None:
    for name, value in msg.items():
        assert "\n" not in value and "\r" not in value, name
    subject = str(msg["Subject"])
    assert not any(c in subject for c in INVISIBLE) and len(subject) <= 250
    html = msg.get_body(("html",))
    if html is not None:
        content = html.get_content()
        for href in re.findall(r'href="([^"]*)"', content):
            assert href.startswith(("http://", "https://")), href
        assert "<script>" not in content


def _email(message: Message) -> EmailMessage:
    from notifier.channels.email import EmailChannel, EmailTarget

    target = EmailTarget(host="127.0.0.1", port=25, tls="none", from_="alerts@example.com", to=["a@example.com"])
    return EmailChannel("r/email/0", target, Renderer(), SystemClock()).build(message)


def check_all(body: dict[str, Any]) -> None:
    m = _message(body)
    r = Renderer()
    check_telegram(telegram_channel.render(r, m, NOW))
    check_slack(slack_channel.render(r, m, NOW))
    check_email(_email(m))
    log = log_channel.render(r, m, NOW)
    assert "\x1b" not in log and not any(c in log for c in INVISIBLE)
    minimal = r.minimal_text(m, NOW)
    assert len(minimal) < 3000 and not any(c in minimal for c in INVISIBLE)
    for line in minimal.split("\n")[1:]:
        assert line.startswith(("http://", "https://"))  # the only line after the first is the group's link


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("url", [*BAD_URLS, "http://prometheus:9090/graph?g0.expr=up%3D%3D0&x=<y>"])
def test_hostile_values_keep_every_channel_within_its_invariants(value: str, url: str) -> None:
    check_all(_hostile_group(value, url))


def test_a_bad_link_is_shown_as_text_or_not_at_all_never_as_a_link() -> None:
    body = _hostile_group("X", "javascript:alert(1)")
    m = _message(body)
    r = Renderer()
    for p in telegram_channel.render(r, m, NOW):
        assert "javascript:" not in p
    assert "javascript:" not in json.dumps([p.payload() for p in slack_channel.render(r, m, NOW)])
    mail = _email(m)
    assert "javascript:" not in mail_text(mail, "html")


def test_slack_top_level_text_cannot_mention_or_disguise_a_link() -> None:
    body = _hostile_group("<!channel> <@U123ABC> <http://evil.example|click me>", "http://ok")
    parts = slack_channel.render(Renderer(), _message(body), NOW)
    assert parts[0].text.startswith(
        "🔴 CRITICAL: &lt;!channel&gt; &lt;@U123ABC&gt; &lt;http://evil.example|click me&gt;"
    )


def test_a_backtick_in_a_label_cannot_close_the_code_span() -> None:
    body = make_group(1)
    body["alerts"][0]["labels"]["region"] = "eu`<!channel>`"
    parts = slack_channel.render(Renderer(), _message(body), NOW)
    text = "\n".join(_mrkdwn_texts(parts[0]))
    assert "`region=euˋ&lt;!channel&gt;ˋ" in text


def test_bidi_and_zero_width_characters_leave_titles_and_subjects() -> None:
    body = make_group(1, name="Draw\u202edown\u200b")
    m = _message(body)
    assert "Drawdown" in str(_email(m)["Subject"])
    assert "Drawdown" in check_html(telegram_channel.render(Renderer(), m, NOW)[0])


def test_a_5000_character_label_fits_one_telegram_part() -> None:
    body = make_group(1)
    body["alerts"][0]["labels"]["bot"] = "b" * 5000
    parts = telegram_channel.render(Renderer(), _message(body), NOW)
    assert len(parts) == 1 and utf16_len(check_html(parts[0])) <= 4096
    assert "b" * 150 in parts[0]


def test_one_alert_in_its_short_form_always_fits_with_the_worst_header() -> None:
    value = "\U0001f600" * 3000
    body = _hostile_group(value, "http://x", n=60)
    check_all(body)


label_text = st.text(st.characters(exclude_characters="\x00", exclude_categories=SURROGATES), max_size=300)
label_key = st.text(st.characters(exclude_characters="\x00", exclude_categories=SURROGATES), min_size=1, max_size=40)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    labels=st.dictionaries(label_key, label_text, max_size=6),
    annotations=st.dictionaries(label_key, label_text, max_size=4),
    name=label_text,
    url=st.one_of(st.sampled_from(BAD_URLS), st.text(max_size=60)),
    n=st.integers(1, 40),
)
def test_any_labels_and_annotations_keep_every_channel_within_its_invariants(
    labels: dict[str, str], annotations: dict[str, str], name: str, url: str, n: int
) -> None:
    body = make_group(n, severity="warning")
    for a in body["alerts"]:
        a["labels"].update(labels)
        a["labels"]["alertname"] = name
        a["annotations"].update(annotations)
        a["generatorURL"] = url
    body["commonLabels"] = {"alertname": name}
    body["groupLabels"] = {"alertname": name}
    body["externalURL"] = url
    try:
        decode_payload(json.dumps(body).encode())
    except PayloadError:
        return  # refused at intake: never rendered
    check_all(body)
