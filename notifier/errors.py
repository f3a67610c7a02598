"""The notifier's exception tree; every layer raises one of these, never a bare Exception.

NotifierError
├── ConfigError          bad configuration: file, key path and reason; refused at start
├── StoreUnavailable     the store cannot commit (down, full, locked); intake answers 503
├── DeliveryError        a channel could not deliver
│   ├── RetryableError   network, 5xx, 429: try again later (optionally after retry_after seconds)
│   └── PermanentError   bad chat id, bad token: retrying cannot help
│       └── ContentRejected  the provider refused this message's content (length, markup, blocks)
"""

from __future__ import annotations


class NotifierError(Exception):
    """Base of every error the notifier raises on purpose."""


class ConfigError(NotifierError):
    """A configuration that cannot be used, named by file and key path."""

    def __init__(self, reason: str, *, path: str = "", source: str = "") -> None:
        self.reason = reason
        self.path = path
        self.source = source
        where = ": ".join(p for p in (source, path) if p)
        super().__init__(f"{where}: {reason}" if where else reason)


class StoreUnavailable(NotifierError):
    """The store could not be reached or could not commit."""


class StoreUnreachable(StoreUnavailable):
    """The store could not be reached at all (connection refused, timed out or lost): no write can succeed now."""


class SenderGone(NotifierError):
    """The webhook's sender stopped waiting for the answer before the webhook could be stored: it was not stored."""


class DeliveryError(NotifierError):
    """A channel failed to deliver a message; `parts_done` counts the parts of a split message already delivered."""

    def __init__(self, message: str, *, parts_done: int | None = None) -> None:
        super().__init__(message)
        self.parts_done = parts_done


class RetryableError(DeliveryError):
    """A failure that may pass: the message is tried again, after `retry_after` seconds when the provider said so."""

    def __init__(self, message: str, *, retry_after: float | None = None, parts_done: int | None = None) -> None:
        super().__init__(message, parts_done=parts_done)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    """A failure that retrying cannot fix; the delivery goes dead at once."""


class ContentRejected(PermanentError):
    """The provider refused the message for what it says (too long, markup or blocks it cannot parse). Retrying
    the same text cannot help; the worker sends it once more in the minimal safe form instead."""
