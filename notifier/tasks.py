"""Background tasks of the notifier's parts (worker, digests, housekeeping, heartbeat, escalation, watchdog):
one way to run a pass again and again, and one way to end them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from notifier.errors import StoreUnavailable


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has ended; nothing to do for None or a finished task."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def repeat(one_pass: Callable[[], Awaitable[Any]], every: float, what: str, log: logging.Logger) -> None:
    """Run `one_pass` every `every` seconds until cancelled. A pass that fails is logged and tried again at the next
    tick: what it works on stays in the store as it was (a store that cannot be reached is a warning, not an
    error)."""
    while True:
        try:
            await one_pass()
        except StoreUnavailable as exc:
            log.warning("%s skipped: %s", what, exc)
        except Exception:
            log.exception("%s failed", what)
        await asyncio.sleep(every)
