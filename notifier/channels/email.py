"""The email channel (aiosmtplib): multipart text and HTML, one thread per alert group.

Each group's first message's Message-ID is kept as the group's thread reference; later messages carry it in
In-Reply-To and References, so mail clients show an incident as one conversation. Quiet-hours "silent" messages are
sent low-priority; critical ones high-priority. Python's email package folds long headers (RFC 5322 lines <= 998).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage, MIMEPart
from email.utils import formatdate, make_msgid
from typing import Annotated, Any, Literal

import aiosmtplib
import msgspec

from notifier.channels import Capabilities, ChannelPlugin, RateRule, Refusal, Shown, failure
from notifier.clock import Clock
from notifier.configtypes import Duration, Strict, secret
from notifier.domain import DeliveryReceipt, Message, Severity
from notifier.templates import Renderer, Template
from notifier.templates.safety import header_line

# Gmail clips HTML bodies over about 102 KB.
EMAIL_MAX_HTML = 100_000
SUBJECT = Template("email_subject", "text", "email_subject.j2")
TEXT = Template("email_text", "text", "text.j2")
HTML = Template("email_html", "html", "email_html.j2")
DIGEST_SUBJECT = Template("digest_subject", "text", "digest_subject.j2", overridable=False)
DIGEST_TEXT = Template("digest_text", "text", "digest_text.j2", overridable=False)
DIGEST_HTML = Template("digest_html", "html", "digest_html.j2", overridable=False)


@dataclass(frozen=True, slots=True)
class EmailContent:
    subject: str
    text: str
    html: str


class EmailTarget(Strict, kw_only=True):
    host: str
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 587
    tls: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    password: str | None = None
    password_file: str | None = None
    from_: str = msgspec.field(name="from")
    to: Annotated[list[str], msgspec.Meta(min_length=1)]
    ca_file: str | None = None
    timeout: Duration = Duration(30.0)
    rate_per_minute: Annotated[int, msgspec.Meta(ge=1)] = 30

    def __post_init__(self) -> None:
        self.password = secret(self.password, self.password_file, "password", required=False)
        if self.password and not self.username:
            raise ValueError("username: required with password")
        for i, addr in enumerate(self.to):
            if "@" not in addr:
                raise ValueError(f"to[{i}]: {addr!r} is not an email address")
        if "@" not in self.from_:
            raise ValueError("from: not an email address")


def render(renderer: Renderer, message: Message, now: float) -> EmailContent:
    """The message as an email's subject, text and HTML (detail dropped when the HTML would be clipped)."""
    base = renderer.context(message, now)
    ctx = base
    body_html = ""
    for detail in (True, False):
        ctx = {**base, "detail": detail}
        body_html = renderer.template(HTML).render(ctx)
        if len(body_html.encode()) <= EMAIL_MAX_HTML:
            break
    subject = header_line(renderer.template(SUBJECT).render(ctx))
    return EmailContent(subject=subject, text=renderer.template(TEXT).render(ctx), html=body_html)


def render_digest(renderer: Renderer, digest: dict[str, Any]) -> EmailContent:
    return EmailContent(
        subject=header_line(renderer.template(DIGEST_SUBJECT).render(digest)),
        text=renderer.template(DIGEST_TEXT).render(digest),
        html=renderer.template(DIGEST_HTML).render(digest),
    )


class EmailChannel:
    """Sends one target's messages through one SMTP server to its recipients."""

    name = "email"

    def __init__(self, key: str, target: EmailTarget, renderer: Renderer, clock: Clock) -> None:
        self._key = key
        self._target = target
        self._renderer = renderer
        self._clock = clock
        self._domain = target.from_.rsplit("@", 1)[-1].strip(">") or "notifier.local"
        self._tag = hashlib.sha256(f"{target.host}:{target.port}:{target.from_}".encode()).hexdigest()[:12]
        self._tls: ssl.SSLContext | None = None
        if target.tls != "none":
            self._tls = (
                ssl.create_default_context(cafile=target.ca_file) if target.ca_file else ssl.create_default_context()
            )

    def rate_rules(self) -> list[RateRule]:
        return [RateRule(f"email:{self._tag}", self._target.rate_per_minute, 60.0)]

    def _content(self, message: Message) -> EmailContent:
        if message.digest is not None:
            content = render_digest(self._renderer, message.digest)
            return EmailContent(content.subject, content.text, "") if message.minimal else content
        now = self._clock.now()
        if message.minimal:
            text = self._renderer.minimal_text(message, now)
            return EmailContent(subject=header_line(text.split("\n", 1)[0]), text=text, html="")
        return render(self._renderer, message, now)

    def build(self, message: Message) -> EmailMessage:
        content = self._content(message)
        m = EmailMessage()
        m["From"] = self._target.from_
        m["To"] = ", ".join(self._target.to)
        m["Subject"] = content.subject
        m["Date"] = formatdate(self._clock.now(), usegmt=True)
        m["Message-ID"] = make_msgid(idstring=message.delivery_id, domain=self._domain)
        if message.thread_ref and message.digest is None:
            m["In-Reply-To"] = message.thread_ref
            m["References"] = message.thread_ref
        if message.silent or message.group.severity is Severity.INFO:
            m["X-Priority"] = "5"
            m["Importance"] = "low"
        elif message.group.severity is Severity.CRITICAL and message.group.firing:
            m["X-Priority"] = "1"
            m["Importance"] = "high"
        m["Auto-Submitted"] = "auto-generated"
        m.set_content(content.text)
        if content.html:
            html = content.html
            cid = make_msgid(idstring="chart", domain=self._domain) if message.chart else ""
            if cid:  # the chart inside the HTML part, as a related image the <img> names by its Content-ID
                img = f'<p><img src="cid:{cid[1:-1]}" alt="chart of the alerts\' series" width="800" height="450"></p>'
                html = html.replace("</body>", img + "</body>", 1) if "</body>" in html else html + img
            m.add_alternative(html, subtype="html")
            html_part = m.get_body(preferencelist=("html",))
            if cid and message.chart and isinstance(html_part, MIMEPart):
                html_part.add_related(message.chart, maintype="image", subtype="png", cid=cid, filename="chart.png")
        return m

    async def send(self, message: Message) -> DeliveryReceipt:
        # rendering a large group takes a while: not on the event loop, which answers webhooks meanwhile
        m = await asyncio.to_thread(self.build, message)
        t = self._target
        try:
            await aiosmtplib.send(
                m,
                hostname=t.host,
                port=t.port,
                username=t.username,
                password=str(t.password) if t.password else None,
                use_tls=t.tls == "tls",
                start_tls=t.tls == "starttls",
                tls_context=self._tls,
                timeout=t.timeout,
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise failure(Refusal.PERMANENT, f"SMTP login refused ({exc.code})") from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if all(500 <= c < 600 for c in codes):
                raise failure(Refusal.PERMANENT, f"SMTP refused every recipient ({codes})") from None
            raise failure(Refusal.UNAVAILABLE, f"SMTP refused recipients for now ({codes})") from None
        except aiosmtplib.SMTPResponseException as exc:
            # 5xx: refused for good; the DATA step's 5xx is about what the message says. 4xx: try again later
            said = f"{exc.code} {exc.message[:120]}"
            if 500 <= exc.code < 600:
                content = isinstance(exc, aiosmtplib.SMTPDataError)
                refusal = Refusal.CONTENT if content else Refusal.PERMANENT
                raise failure(refusal, f"SMTP refused the message: {said}") from None
            raise failure(Refusal.UNAVAILABLE, f"SMTP answered {said}") from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            said = f"SMTP server unreachable: {type(exc).__name__}: {str(exc)[:120]}"
            raise failure(Refusal.UNAVAILABLE, said) from None
        return DeliveryReceipt(ref=str(m["Message-ID"]))

    async def edit(self, message: Message) -> DeliveryReceipt:
        raise failure(Refusal.PERMANENT, "this channel cannot edit a message it sent")

    async def aclose(self) -> None:
        return None


def _show(renderer: Renderer, message: Message, now: float) -> list[Shown]:
    content = render(renderer, message, now)
    raw = {"subject": content.subject, "text": content.text, "html": content.html}
    return [
        Shown(
            text=f"Subject: {content.subject}\n\n{content.text}",
            subject=content.subject,
            html=content.html,
            raw=raw,
        )
    ]


PLUGIN: ChannelPlugin[EmailTarget] = ChannelPlugin(
    name="email",
    target=EmailTarget,
    templates=(SUBJECT, TEXT, HTML),
    build=EmailChannel,
    show=_show,
    capabilities=Capabilities(threads=True, digests=True, inline_images=True),
)
