"""Group commit: every write of the process goes through one queue, and whatever was submitted while a commit was
under way goes into the next transaction and shares its one disk flush -- intake, claims and delivery outcomes
alike. Each unit (a write function, or one call of a batch function for all its items) runs in its own savepoint,
so one that raises is undone alone. A transaction the database refuses is retried one item at a time, so that
only the item the database cannot take fails; none was answered before its commit.

How a transaction is run (which connection, which thread) is the store's: `GroupCommit` is given that as a
function of the units' write functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from notifier.errors import StoreUnavailable, StoreUnreachable
from notifier.store.failures import describe_db_error

J = TypeVar("J")
R = TypeVar("R")
log = logging.getLogger("notifier.store")
GATHER_TURNS = 3  # turns of the event loop a transaction waits for more writes, while they keep coming
MAX_ENTRIES = 512  # submitted writes per transaction
Outcomes = list[tuple[bool, Any]]  # per write function: (True, its result) or (False, the exception)
RunTransaction = Callable[[list[Callable[[Connection], Any]]], Awaitable[Outcomes]]


@dataclass(frozen=True, slots=True, eq=False)
class Batch(Generic[J, R]):
    """Items that are written together: `fn(conn, items)` returns one result per item, or the exception that item
    alone failed with. `on_commit` sees every item's result once the transaction is committed."""

    fn: Callable[[Connection, list[J]], list[R | Exception]]
    on_commit: Callable[[list[R | Exception]], None] | None = None


class GroupCommit:
    """The write queue and the loop that turns it into transactions (see the module's docstring)."""

    def __init__(self, run: RunTransaction) -> None:
        """`run(fns)` runs the functions in one transaction and returns each one's outcome once it is durably
        committed; it raises `Undone` when a lone function raised and its transaction was rolled back, and
        reports a failed transaction as every function's StoreUnavailable."""
        self._run = run
        self._queue: asyncio.Queue[_Entry] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def submit_function(self, fn: Callable[[Connection], Any]) -> Any:
        return await self._submit(_Entry(None, fn))

    async def submit_item(self, batch: Batch[Any, Any], item: Any) -> Any:
        return await self._submit(_Entry(batch, item))

    async def _submit(self, entry: _Entry) -> Any:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="store-writer")
        self._queue.put_nowait(entry)
        return await entry.future

    async def drain(self) -> None:
        """Wait until every submitted write is committed."""
        if self._task is not None and not self._task.done():
            await self._queue.join()

    async def stop(self) -> None:
        await self.drain()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            # Writes that queued up while the last transaction ran make the next one at once; the last one's
            # requests are answered while its commit is under way. Waiting for more first would leave the store
            # idle while the loop answers them.
            ready = not self._queue.empty()
            entries = [await self._queue.get()]
            # After a quiet spell, requests the loop read in the same turn are still on their way here: wait a few
            # turns, as long as the queue grows, so that they share this transaction instead of each paying for
            # the next.
            for _ in range(0 if ready else GATHER_TURNS):
                waiting = self._queue.qsize()
                await asyncio.sleep(0)
                if self._queue.qsize() == waiting:
                    break
            while not self._queue.empty() and len(entries) < MAX_ENTRIES:
                entries.append(self._queue.get_nowait())
            try:
                live = [e for e in entries if not e.future.cancelled()]
                if live:
                    await self._commit(live, retry_alone=len(live) > 1)
            except Exception as exc:  # a bug here must not stop every write of the process
                log.exception("write loop failed")
                for e in entries:
                    if not e.future.done():
                        e.future.set_exception(StoreUnavailable(f"write failed: {type(exc).__name__}"))
            finally:
                for _ in entries:
                    self._queue.task_done()

    async def _commit(self, entries: list[_Entry], *, retry_alone: bool) -> None:
        units = _units(entries)
        outcomes = await self._run_guarded([u.run for u in units])
        # Items are tried again one by one when the database refused their transaction: one item's writes may be
        # what it refused. Not when it could not be reached: one attempt per item would only hold every write
        # queued behind them (webhooks whose sender stops waiting meanwhile) for nothing.
        retry_alone = retry_alone and not all(not ok and isinstance(v, StoreUnreachable) for ok, v in outcomes)
        if retry_alone and all(not ok and isinstance(v, StoreUnavailable) for ok, v in outcomes):
            for e in entries:  # the shared transaction failed
                await self._commit([e], retry_alone=False)
            return
        for unit, (ok, value) in zip(units, outcomes, strict=True):
            if ok:
                unit.settle(value)
            elif unit.batch is None:
                unit.fail(value)
            elif retry_alone and len(unit.entries) > 1:
                # the batch function gave up on the batch as a whole (a conflict, or one item the database refused)
                for e in unit.entries:
                    await self._commit([e], retry_alone=False)
            else:
                if not isinstance(value, StoreUnavailable):
                    log.warning("batched write failed: %s", describe_db_error(value))
                    value = StoreUnavailable(describe_db_error(value))
                unit.fail(value)

    async def _run_guarded(self, fns: list[Callable[[Connection], Any]]) -> Outcomes:
        try:
            return await self._run(fns)
        except Undone as undone:  # a lone function raised: its transaction was rolled back
            return [(False, undone.cause)]
        except StoreUnavailable as exc:
            return [(False, exc)] * len(fns)
        except Exception as exc:
            log.warning("write transaction failed: %s", describe_db_error(exc))
            return [(False, StoreUnavailable(describe_db_error(exc)))] * len(fns)


@dataclass(slots=True, eq=False)
class _Entry:
    """One submitted write: an item of a batch, or (batch None) a write function."""

    batch: Batch[Any, Any] | None
    item: Any
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass(slots=True)
class _Unit:
    """What runs in one savepoint: a write function, or one call of a batch function for all its items."""

    entries: list[_Entry]
    batch: Batch[Any, Any] | None

    def run(self, conn: Connection) -> Any:
        if self.batch is None:
            return self.entries[0].item(conn)
        return self.batch.fn(conn, [e.item for e in self.entries])

    def settle(self, value: Any) -> None:
        if self.batch is None:
            settle(self.entries[0].future, True, value)
            return
        for e, v in zip(self.entries, value, strict=True):
            settle(e.future, not isinstance(v, Exception), v)
        if self.batch.on_commit is not None:
            self.batch.on_commit(value)

    def fail(self, exc: Exception) -> None:
        for e in self.entries:
            settle(e.future, False, exc)


def _units(entries: list[_Entry]) -> list[_Unit]:
    units: list[_Unit] = []
    batches: dict[Batch[Any, Any], _Unit] = {}
    for e in entries:
        if e.batch is None:
            units.append(_Unit([e], None))
        elif e.batch in batches:
            batches[e.batch].entries.append(e)
        else:
            batches[e.batch] = _Unit([e], e.batch)
            units.append(batches[e.batch])
    return units


def settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class Undone(Exception):
    """A lone function raised: its transaction is rolled back instead of a savepoint, and `cause` is its outcome."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def run_each(conn: Connection, fns: list[Callable[[Connection], Any]]) -> list[tuple[bool, Any]]:
    """Each function in its own savepoint: one that raises is undone alone. A database error that voids the whole
    transaction (SQLite rolls back on a full disk) propagates and fails the batch. A function alone in its
    transaction needs no savepoint: the transaction itself is rolled back if it raises."""
    if len(fns) == 1:
        try:
            return [(True, fns[0](conn))]
        except IntegrityError as exc:
            raise Undone(exc) from exc
        except SQLAlchemyError:
            raise
        except Exception as exc:
            raise Undone(exc) from exc
    out: list[tuple[bool, Any]] = []
    for fn in fns:
        try:
            with conn.begin_nested():
                out.append((True, fn(conn)))
        except IntegrityError as exc:  # a constraint: that function's problem, undone by its savepoint
            out.append((False, exc))
        except SQLAlchemyError:
            raise  # the database itself failed: the batch is retried one function at a time
        except Exception as exc:
            out.append((False, exc))
    return out
