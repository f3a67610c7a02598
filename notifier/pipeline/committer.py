"""Group commit: concurrent webhooks are written in one transaction and one fsync, each in its own savepoint.

A durable commit (SQLite synchronous=FULL, PostgreSQL's default) costs one disk flush. Under load, requests that
arrive while a flush is under way wait for the next one and share it; a lone request is committed at once. A job that
fails on its own (its savepoint rolls back) fails only its own request; a commit that fails fails the whole batch
with StoreUnavailable, and none of those requests was answered 2xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.errors import StoreUnavailable
from notifier.store import Store
from notifier.store.engine import describe_db_error

T = TypeVar("T")
Job = Callable[[AsyncConnection], Awaitable[T]]
log = logging.getLogger("notifier.intake")


@dataclass(slots=True)
class _Pending(Generic[T]):
    job: Job[T]
    future: asyncio.Future[T] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommitter:
    """Runs intake jobs in shared transactions; `submit` returns once the job's writes are committed."""

    def __init__(self, store: Store, *, max_batch: int = 128, on_commit: Callable[[], None] | None = None) -> None:
        self._store = store
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending[Any]] = asyncio.Queue()
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

    async def submit(self, job: Job[T]) -> T:
        if self._task is None or self._task.done():
            raise StoreUnavailable("the intake writer is not running")
        p: _Pending[T] = _Pending(job)
        await self._queue.put(p)
        return await p.future

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[_Pending[Any]]) -> None:
        live = [p for p in batch if not p.future.cancelled()]
        if not live:
            return
        error = await self._attempt(live)
        if error is None:
            return
        if len(live) > 1:
            # One request's rows may be what the database refused: retry each alone, so only that one fails.
            for p in live:
                single = await self._attempt([p])
                if single is not None and not p.future.done():
                    p.future.set_exception(single)
            return
        if not live[0].future.done():
            live[0].future.set_exception(error)

    async def _attempt(self, batch: list[_Pending[Any]]) -> StoreUnavailable | None:
        """Run the jobs in one transaction. Returns None when committed (futures resolved), or the store error
        that made the whole transaction fail (futures untouched, nothing of it stored)."""
        results: list[tuple[_Pending[Any], bool, Any]] = []
        try:
            async with self._store.begin() as conn:
                for p in batch:
                    try:
                        async with conn.begin_nested():
                            value = await p.job(conn)
                        results.append((p, True, value))
                    except (StoreUnavailable, SQLAlchemyError):
                        raise  # the database refused: the transaction is gone (SQLite rolls back on "full")
                    except Exception as exc:
                        results.append((p, False, exc))
        except StoreUnavailable as exc:
            return exc
        except Exception as exc:
            log.warning("intake transaction failed: %s", describe_db_error(exc))
            return StoreUnavailable(describe_db_error(exc))
        for p, ok, value in results:
            if p.future.done():
                continue
            if ok:
                p.future.set_result(value)
            else:
                p.future.set_exception(value)
        if self._on_commit is not None:
            self._on_commit()
        return None
