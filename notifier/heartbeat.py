"""The notifier's own dead-man's switch.

Alertmanager sends the notifier's own alerts (NotifierDown, ...) to the notifier, so a notifier that is down, or
whose store refuses writes, cannot tell anyone. With `heartbeat.url` set, the notifier calls that URL every
`heartbeat.interval` while it can do its job: its store took a write just now and its delivery worker runs. An
external dead-man's-switch service (healthchecks.io, Uptime Kuma push monitors, Cronitor) alarms when the calls stop,
by a path that does not depend on the notifier.

The URL holds the check's token: it is never logged, and failures are reported by kind only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx

from notifier.clock import Clock
from notifier.errors import StoreUnavailable
from notifier.metrics import NotifierMetrics
from notifier.settings import HeartbeatSettings
from notifier.store import Store
from notifier.tasks import cancel_and_wait

log = logging.getLogger("notifier.heartbeat")


class Heartbeat:
    """Calls the dead-man's-switch URL while the notifier is healthy."""

    def __init__(
        self,
        settings: HeartbeatSettings | None,
        store: Store,
        worker_running: Callable[[], bool],
        clock: Clock,
        metrics: NotifierMetrics,
    ) -> None:
        self._settings = settings
        self._store = store
        self._worker_running = worker_running
        self._clock = clock
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        if self._settings is not None and self._task is None:
            self._client = httpx.AsyncClient(timeout=self._settings.timeout, follow_redirects=True)
            self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        assert self._settings is not None
        while True:
            try:
                await self.beat()
            except Exception as exc:  # never let the heartbeat die quietly: that would look like an outage anyway
                log.warning("heartbeat failed unexpectedly: %s", type(exc).__name__)
            await asyncio.sleep(self._settings.interval)

    async def problems(self) -> list[str]:
        """What keeps the notifier from doing its job right now; empty when it is healthy."""
        found = []
        now = self._clock.now()
        try:
            await self._store.prove_writable(now)
        except StoreUnavailable as exc:
            found.append(f"store: {exc}")
        if not self._worker_running():
            found.append("worker: not running")
        return found

    async def beat(self) -> str:
        """One heartbeat: 'sent', 'withheld' (the notifier is not healthy) or 'failed' (the call did not go through)."""
        assert self._settings is not None and self._client is not None
        problems = await self.problems()
        if problems:
            outcome = "withheld"
            log.warning("heartbeat withheld, so that the dead-man's switch alarms: %s", "; ".join(problems))
        else:
            outcome = "sent"
            try:
                resp = await self._client.get(str(self._settings.url))
                if resp.status_code >= 400:
                    outcome = "failed"
                    log.warning("heartbeat call answered HTTP %d", resp.status_code)
            except httpx.HTTPError as exc:
                outcome = "failed"
                log.warning("heartbeat call failed: %s", type(exc).__name__)
        self._metrics.heartbeats.labels(outcome).inc()
        return outcome
