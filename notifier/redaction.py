"""Secrets never leave the process: one redaction step for every text that does.

Every configured secret (bot tokens, webhook URLs, passwords, signing secrets, Alertmanager's credentials, the
heartbeat URL, the database password) is added to the process's redactor when its settings are loaded. What the
notifier stores, returns or prints of an error passes through `redact`; every log record, the notifier's own and
those of the libraries it uses (python-telegram-bot, httpx, slack-sdk, aiosmtplib, ...), is redacted when it is
made, whichever handler then writes it. A secret is replaced wherever it appears, in any case, as written and
percent-encoded (a Telegram token travels in the URL's path).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

import msgspec

from notifier.configtypes import Secret
from notifier.settings import Settings

MASK = "***"


class Redactor:
    """Replaces every secret it was given with `***`."""

    def __init__(self) -> None:
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, secrets: Iterable[str]) -> None:
        forms = set(self._forms)
        for secret in secrets:
            if not secret:
                continue
            forms.update({secret, quote(secret, safe=""), quote(secret)})
            parts = urlsplit(secret)
            if parts.scheme and parts.netloc:
                # an error may quote only the path of a webhook URL (the token is in it)
                tail = parts.path + (f"?{parts.query}" if parts.query else "")
                if len(tail) >= 8:
                    forms.add(tail)
        with self._lock:
            if forms == self._forms:
                return
            self._forms = forms
            # longest first, so that a secret that contains another is replaced whole
            # case-insensitive: an error text may come back lowercased (python-telegram-bot lowercases Telegram's)
            self._pattern = re.compile(
                "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)), re.IGNORECASE
            )

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None else text


def secrets_in(settings: Settings) -> list[str]:
    """Every secret a config holds: each `Secret` value anywhere in the settings (the settings make every secret
    one: tokens, passwords, signing secrets, webhook and heartbeat URLs), and the database URL's password."""
    from sqlalchemy.engine import make_url

    out: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, Secret):
            out.append(str(node))
        elif isinstance(node, msgspec.Struct):
            for name in node.__struct_fields__:
                walk(getattr(node, name))
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)

    walk(settings)
    with contextlib.suppress(Exception):  # a URL SQLAlchemy cannot parse has no password for us to hide
        out.append(make_url(settings.storage.url).password or "")
    return [s for s in out if s]


REDACTOR = Redactor()  # the process's own
_installed = False


def redact(text: str) -> str:
    """The text without any secret this process was configured with."""
    return REDACTOR(text)


def protect(settings: Settings) -> None:
    """Register the config's secrets and make sure every log record is redacted from now on."""
    REDACTOR.add(secrets_in(settings))
    _install_record_factory()


def _install_record_factory() -> None:
    global _installed
    if _installed:
        return
    make = logging.getLogRecordFactory()

    def redacted_record(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it itself when it formats the record
            return record
        record.msg, record.args = REDACTOR(message), None
        if record.exc_info:
            record.exc_text = REDACTOR(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(redacted_record)
    _installed = True
