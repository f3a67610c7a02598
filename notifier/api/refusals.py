"""Refused webhooks in the log: a wrong token or a broken sender shows on the notifier's side too, and a flood of
refusals cannot fill the disk."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("notifier.api")
PER_WINDOW = 10  # lines a window may log
WINDOW = 60.0  # seconds


class RefusalLog:
    """Logs each refused webhook at WARNING (status, reason, field, peer), at most PER_WINDOW a minute; what was
    left out is counted and said in one line when the next window starts."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._window_start = float("-inf")
        self._logged = 0
        self._left_out = 0

    def refused(self, status: int, reason: str, field: str | None, peer: str) -> None:
        now = self._now()
        if now - self._window_start >= WINDOW:
            if self._left_out:
                log.warning("%d more refused webhooks in the last minute were not logged", self._left_out)
            self._window_start, self._logged, self._left_out = now, 0, 0
        if self._logged >= PER_WINDOW:
            self._left_out += 1
            return
        self._logged += 1
        where = f" ({field})" if field else ""
        log.warning("webhook refused with %d from %s: %s%s", status, peer or "an unknown peer", reason, where)
