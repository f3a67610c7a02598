"""Group commit: webhooks that arrive while a commit is under way are written together, in one transaction and one
disk flush, by the intake's set-based batch function.

A durable commit (SQLite synchronous=FULL, PostgreSQL's default) costs one flush; a lone request is committed at
once, and under load the requests queued meanwhile share the next one. A webhook whose own decision fails fails
alone. A transaction the database refuses is retried one webhook at a time, so that a webhook the database cannot
take fails alone with 503 and its batch-mates are stored; none of them was answered 2xx before its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy.engine import Connection

from notifier.errors import StoreUnavailable
from notifier.store import Store
from notifier.store.engine import describe_db_error

J = TypeVar("J")
R = TypeVar("R")
BatchFn = Callable[[Connection, list[J]], list[R | Exception]]
log = logging.getLogger("notifier.intake")


@dataclass(slots=True)
class _Pending(Generic[J, R]):
    job: J
    future: asyncio.Future[R] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommitter(Generic[J, R]):
    """Commits jobs in shared transactions; `submit` returns the job's result once it is committed."""

    def __init__(
        self,
        store: Store,
        batch: BatchFn[J, R],
        *,
        max_batch: int = 256,
        on_commit: Callable[[list[R | Exception]], None] | None = None,
    ) -> None:
        self._store = store
        self._batch = batch
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending[J, R]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._on_commit = on_commit

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="group-committer")

    async def stop(self) -> None:
        """Finish what was submitted, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def submit(self, job: J) -> R:
        if self._task is None or self._task.done():
            raise StoreUnavailable("the intake writer is not running")
        p: _Pending[J, R] = _Pending(job)
        await self._queue.put(p)
        return await p.future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            except Exception as exc:
                log.exception("intake batch failed")
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(StoreUnavailable(f"intake failed: {type(exc).__name__}"))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[_Pending[J, R]]) -> None:
        live = [p for p in batch if not p.future.cancelled()]
        if not live:
            return
        error = await self._attempt(live)
        if error is None:
            return
        if len(live) > 1:
            for p in live:
                single = await self._attempt([p])
                if single is not None and not p.future.done():
                    p.future.set_exception(single)
            return
        if not live[0].future.done():
            live[0].future.set_exception(error)

    async def _attempt(self, batch: list[_Pending[J, R]]) -> StoreUnavailable | None:
        """One transaction for the batch. None when committed (futures resolved), else the store error (futures
        untouched, nothing of it stored)."""
        try:
            jobs = [p.job for p in batch]
            results = await self._store.run_in_transaction(lambda conn: self._batch(conn, jobs))
        except StoreUnavailable as exc:
            return exc
        except Exception as exc:
            log.warning("intake transaction failed: %s", describe_db_error(exc))
            return StoreUnavailable(describe_db_error(exc))
        for p, value in zip(batch, results, strict=True):
            if p.future.done():
                continue
            if isinstance(value, Exception):
                p.future.set_exception(value)
            else:
                p.future.set_result(value)
        if self._on_commit is not None:
            self._on_commit(results)
        return None
