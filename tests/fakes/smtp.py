"""aiosmtpd as the SMTP server for tests: plain, STARTTLS and AUTH, keeping every accepted message."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mail_text(message: EmailMessage, kind: str = "plain") -> str:
    """The text of a message's plain or HTML part."""
    part = message.get_body((kind,))
    assert part is not None, f"no {kind} part"
    content: str = part.get_content()
    return content


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    at: float = field(default_factory=time.time)  # when the server took it


@dataclass
class RecordingHandler:
    messages: list[Received] = field(default_factory=list)
    fail_with: list[str] = field(default_factory=list)  # scripted replies, e.g. "451 4.3.0 try later"
    delay: float = 0.0  # seconds before answering DATA, to test timeouts

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 -- aiosmtpd's hook name
        if self.delay:
            await asyncio.sleep(self.delay)
            self.delay = 0.0
        if self.fail_with:
            return self.fail_with.pop(0)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"


class _Auth:
    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.user
            and auth_data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False)


class SMTPServer:
    """A running aiosmtpd on loopback."""

    def __init__(
        self, *, tls_context: ssl.SSLContext | None = None, user: str | None = None, password: str | None = None
    ) -> None:
        self.handler = RecordingHandler()
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if tls_context is not None:
            kwargs["tls_context"] = tls_context
            kwargs["require_starttls"] = True
        if user is not None:
            kwargs["authenticator"] = _Auth(user, password or "")
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = tls_context is not None
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def start(self) -> SMTPServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
