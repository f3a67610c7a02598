"""When to try a failed message again: the provider's retry-after exactly, else exponential back-off with jitter."""

from __future__ import annotations

import random

from notifier.settings import DeliverySettings


def backoff(attempts: int, settings: DeliverySettings, rng: random.Random | None = None) -> float:
    """Delay before attempt number `attempts + 1`: initial * 2^(attempts-1), capped, with +-25 % "equal" jitter."""
    base = min(settings.backoff_max, settings.backoff_initial * (2 ** max(0, attempts - 1)))
    r = (rng or random).uniform(0.75, 1.25)
    return float(min(settings.backoff_max, base * r))


def retry_delay(attempts: int, settings: DeliverySettings, retry_after: float | None) -> float:
    if retry_after is not None and retry_after >= 0:
        return float(retry_after)
    return backoff(attempts, settings)
