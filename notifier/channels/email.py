"""The email channel (aiosmtplib): multipart text and HTML, one thread per alert group.

Each group's first message's Message-ID is kept as the group's thread reference; later messages carry it in
In-Reply-To and References, so mail clients show an incident as one conversation. Quiet-hours "silent" messages are
sent low-priority; critical ones high-priority. Python's email package folds long headers (RFC 5322 lines <= 998).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from notifier.channels import RateRule
from notifier.clock import Clock
from notifier.domain import DeliveryReceipt, Message, Severity
from notifier.errors import ContentRejected, PermanentError, RetryableError
from notifier.settings import EmailTarget
from notifier.templates import EmailContent, Renderer
from notifier.templates.safety import header_line


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
            content = self._renderer.digest_email(message.digest)
            return EmailContent(content.subject, content.text, "") if message.minimal else content
        now = self._clock.now()
        if message.minimal:
            text = self._renderer.minimal_text(message, now)
            return EmailContent(subject=header_line(text.split("\n", 1)[0]), text=text, html="")
        return self._renderer.email(message, now)

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
            m.add_alternative(content.html, subtype="html")
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
            raise PermanentError(f"SMTP login refused ({exc.code})") from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if all(500 <= c < 600 for c in codes):
                raise PermanentError(f"SMTP refused every recipient ({codes})") from None
            raise RetryableError(f"SMTP refused recipients for now ({codes})") from None
        except aiosmtplib.SMTPDataError as exc:
            if 500 <= exc.code < 600:  # the server read the message and refused what it says
                raise ContentRejected(f"SMTP refused the message: {exc.code} {exc.message[:120]}") from None
            raise RetryableError(f"SMTP answered {exc.code} {exc.message[:120]}") from None
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise PermanentError(f"SMTP refused the message: {exc.code} {exc.message[:120]}") from None
            raise RetryableError(f"SMTP answered {exc.code} {exc.message[:120]}") from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise RetryableError(f"SMTP server unreachable: {type(exc).__name__}: {str(exc)[:120]}") from None
        return DeliveryReceipt(ref=str(m["Message-ID"]))

    async def aclose(self) -> None:
        return None
