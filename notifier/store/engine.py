"""The store's engine: one async SQLAlchemy engine for SQLite (aiosqlite, WAL, synchronous=FULL) or PostgreSQL
(asyncpg), Alembic migrations, and the translation of driver failures into StoreUnavailable."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import random
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from notifier.errors import NotifierError, StoreUnavailable
from notifier.settings import StorageSettings

T = TypeVar("T")
J = TypeVar("J")
R = TypeVar("R")
log = logging.getLogger("notifier.store")
_MIGRATIONS = Path(__file__).parent / "migrations"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> two digits: an id is 13 lookups
_READONLY = "notifier_readonly"
_BEGUN = "notifier_begun"  # the store's write path issues BEGIN IMMEDIATE itself
BUSY_TIMEOUT_MS = 30_000
# The writer's page cache holds the indexes that every webhook looks up and inserts into at random places
# (redelivery keys, group hashes); SQLite's default 2 MiB holds a few days of them, and each miss is a read from the
# OS on the event loop.
WRITER_CACHE_KIB = 32 * 1024
# Pages in SQLite's log (SQLite's own default) at which the next write transaction waits for a checkpoint, so that
# the log starts over; until then the background checkpointer copies it while transactions go on (see _run_sqlite).
LOG_PAGES = 1000
# Commits between two background checkpoints: each flushes the log and the database file, and under load one per
# commit took a third more CPU in the writer threads (2-alert, 32 connections: 60 -> 46 µs per webhook at 4).
BACKGROUND_CHECKPOINT_EVERY = 4
# Commits that may pass while a background checkpoint is still under way; then the next transaction waits for a
# checkpoint of its own. The log's size is only known when a checkpoint reports it, so without this bound a slow
# background checkpoint (a busy machine) would let the log grow unseen.
MAX_COMMITS_UNSEEN = 3 * BACKGROUND_CHECKPOINT_EVERY
GATHER_TURNS = 3  # turns of the event loop a transaction waits for more writes, while they keep coming
_MIGRATION_LOCK = 0x6E6F7469  # PostgreSQL advisory lock id, so replicas starting together migrate one at a time
# Ids need uniqueness, not secrecy: a generator seeded from the OS once, instead of a system call per id.
_ids = random.Random(int.from_bytes(os.urandom(16), "big"))  # noqa: S311 -- ids, not secrets


def new_id() -> str:
    """A ULID: 48 bits of milliseconds and 80 random bits, 26 characters, sortable by creation time."""
    n = (int(time.time() * 1000) << 80) | _ids.getrandbits(80)
    p = _PAIRS  # the 130-bit ULID (its two top bits zero) as 13 pairs of Crockford base32 digits
    return "".join(
        (
            p[n >> 120],
            p[n >> 110 & 1023],
            p[n >> 100 & 1023],
            p[n >> 90 & 1023],
            p[n >> 80 & 1023],
            p[n >> 70 & 1023],
            p[n >> 60 & 1023],
            p[n >> 50 & 1023],
            p[n >> 40 & 1023],
            p[n >> 30 & 1023],
            p[n >> 20 & 1023],
            p[n >> 10 & 1023],
            p[n & 1023],
        )
    )


def async_url(url: str) -> str:
    """sqlite:///x -> sqlite+aiosqlite:///x; postgresql://... -> postgresql+asyncpg://..."""
    u = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if u.drivername == "sqlite":
        u = u.set(drivername="sqlite+aiosqlite")
    elif u.drivername == "postgresql":
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


def redact_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL; None for PostgreSQL and for a database in memory."""
    u = make_url(async_url(url))
    if not u.drivername.startswith("sqlite") or not u.database or u.database == ":memory:":
        return None
    return u.database


def claim_sqlite_store(url: str) -> IO[bytes] | None:
    """On SQLite one process serves a store: its intake keeps the recent redelivery keys in memory and its rate
    limits are its own. `notifier serve` claims the store with a lock on `<database>.serve-lock`, held as long
    as the returned file is open (the process's life; the kernel lets go when it dies, even by kill -9). A second
    process is refused with the holder's pid. None for PostgreSQL and for a database in memory."""
    database = sqlite_file(url)
    if database is None:
        return None
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    lock = Path(f"{database}.serve-lock").open("a+b")  # noqa: SIM115 -- held open for the life of the process
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().decode(errors="replace").strip() or "another process"
        lock.close()
        raise NotifierError(
            f"the SQLite store {database} is served by {holder} already: on SQLite one notifier process serves a "
            "store (stop the other one, or use PostgreSQL to run replicas)"
        ) from None
    lock.truncate(0)
    lock.write(f"notifier pid {os.getpid()}".encode())
    lock.flush()
    return lock


class Store:
    """The notifier's database: engine, migrations, transactions; every driver failure surfaces as StoreUnavailable."""

    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self.url = async_url(settings.url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        database = sqlite_file(self.url)
        if database is not None:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_size"] = settings.pool_size
            kwargs["max_overflow"] = settings.pool_size
            kwargs["pool_pre_ping"] = True
            kwargs["pool_timeout"] = settings.connect_timeout
            kwargs["connect_args"] = {"timeout": settings.connect_timeout, "command_timeout": 30}
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self._read_engine = self.engine.execution_options(**{_READONLY: True})
        self._write_queue: asyncio.Queue[_Entry] = asyncio.Queue()
        self._write_task: asyncio.Task[None] | None = None
        self.writer_engine: Engine | None = None
        self._writer: _WriterThread | None = None
        self._write_conn: Connection | None = None
        self._checkpoint: asyncio.Task[None] | None = None  # the next transaction waits for it: see _run_sqlite
        self._checkpointer: _Checkpointer | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine.sync_engine)
            # Writes use the plain sqlite3 driver (see _run_sqlite): aiosqlite would hop to its thread per statement.
            self.writer_engine = create_engine(
                self.url.replace("sqlite+aiosqlite", "sqlite+pysqlite", 1),
                connect_args={"timeout": 30, "check_same_thread": False},
            )
            _configure_sqlite(self.writer_engine, busy_timeout_ms=0, writer=True)  # busy_timeout 0: see _try_begin
            self.writer_engine = self.writer_engine.execution_options(**{_BEGUN: True})
            self._writer = _WriterThread()
            if database is not None:  # a database in memory has no log to copy
                self._checkpointer = _Checkpointer(database)

    async def run_in_transaction(self, fn: Callable[[Connection], T]) -> T:
        """Run a synchronous write function and return once it is durably committed (see `_write_loop`)."""
        result: T = await self._submit(_Entry(None, fn))
        return result

    async def run_batched(self, batch: Batch[J, R], item: J) -> R:
        """Commit `item` together with the other items of `batch` that wait for the same transaction: one call of
        `batch.fn` for all of them. Returns the item's own result once it is durably committed."""
        result: R = await self._submit(_Entry(batch, item))
        return result

    async def _submit(self, entry: _Entry) -> Any:
        if self._write_task is None or self._write_task.done():
            self._write_task = asyncio.create_task(self._write_loop(), name="store-writer")
        self._write_queue.put_nowait(entry)
        return await entry.future

    async def _write_loop(self) -> None:
        """Group commit. Every write of the process comes through here: whatever was submitted while a commit was
        under way goes into the next transaction and shares its one disk flush -- intake, claims and delivery
        outcomes alike. Each unit (a write function, or one call of a batch function for all its items) runs in
        its own savepoint, so one that raises is undone alone. A transaction the database refuses is retried one
        item at a time, so that only the item the database cannot take fails; none was answered before its
        commit."""
        while True:
            # Writes that queued up while the last transaction ran make the next one at once; the last one's
            # requests are answered while its commit is under way. Waiting for more first would leave the store
            # idle while the loop answers them.
            ready = not self._write_queue.empty()
            entries = [await self._write_queue.get()]
            # After a quiet spell, requests the loop read in the same turn are still on their way here: wait a few
            # turns, as long as the queue grows, so that they share this transaction instead of each paying for
            # the next.
            for _ in range(0 if ready else GATHER_TURNS):
                waiting = self._write_queue.qsize()
                await asyncio.sleep(0)
                if self._write_queue.qsize() == waiting:
                    break
            while not self._write_queue.empty() and len(entries) < 512:
                entries.append(self._write_queue.get_nowait())
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
                    self._write_queue.task_done()

    async def _commit(self, entries: list[_Entry], *, retry_alone: bool) -> None:
        units = _units(entries)
        outcomes = await self._run_guarded([u.run for u in units])
        if retry_alone and all(not ok and isinstance(v, StoreUnavailable) for ok, v in outcomes):
            # the shared transaction failed: one item's writes may be what the database refused
            for e in entries:
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

    async def _run_guarded(self, fns: list[Callable[[Connection], Any]]) -> list[tuple[bool, Any]]:
        try:
            if self._writer is None:
                async with self.begin() as conn:
                    result: list[tuple[bool, Any]] = await conn.run_sync(_run_each, fns)
                return result
            return await self._run_sqlite(fns)
        except _Undone as undone:  # a lone function raised: its transaction was rolled back
            return [(False, undone.cause)]
        except StoreUnavailable as exc:
            return [(False, exc)] * len(fns)
        except Exception as exc:
            log.warning("write transaction failed: %s", describe_db_error(exc))
            return [(False, StoreUnavailable(describe_db_error(exc)))] * len(fns)

    async def _run_sqlite(self, fns: list[Callable[[Connection], Any]]) -> list[tuple[bool, Any]]:
        """The transaction's statements run here, on the event loop: they are short, and run under the GIL
        wherever they run, so handing them to a thread only adds waits for the GIL and for the loop. What can
        take long without the GIL runs in the writer thread: waiting for another process's write lock, the
        commit with its disk flush, and the checkpoint; the loop serves requests meanwhile.

        Checkpoints (copying the log into the database file, with a flush of each) are the store's, not
        SQLite's: SQLite would run one inside every thousandth page's commit, and that commit's webhooks would
        wait for it. Every few commits the background checkpointer (its own thread and connection) copies what
        the log holds while the next transactions go on. The log only starts over once a checkpoint has copied
        all of it before the next write, which under steady writes the background one never has; so once the
        log holds LOG_PAGES pages, a checkpoint runs on the write connection, after the background one is done,
        and the next transaction waits for it: it has only the last few commits left to copy."""
        assert self.writer_engine is not None and self._writer is not None
        if self._checkpoint is not None:
            with contextlib.suppress(Exception):  # _checkpoint_between reports its own failures
                await self._checkpoint
            self._checkpoint = None
        try:
            if self._write_conn is None:  # one connection for every write transaction, kept between them
                self._write_conn = self.writer_engine.connect()
            conn = self._write_conn
            raw: Any = conn.connection.driver_connection
            if not _try_begin(raw):
                await self._writer.run(lambda: _begin_waiting(raw))
            with conn.begin():  # the listener sees _BEGUN and leaves the BEGIN to us
                out = _run_each(conn, fns)
                # The driver's own commit, in the writer thread; SQLAlchemy's, when the block ends, then finds
                # the transaction committed and has nothing left to do.
                await self._writer.run(raw.commit)
        except (OperationalError, DBAPIError, OSError, sqlite3.Error) as exc:
            self.release_write_connection()  # not trusted again: the next transaction opens a new one
            raise StoreUnavailable(describe_db_error(exc)) from exc
        checkpointer = self._checkpointer
        if checkpointer is not None:  # a database in memory has no log
            if checkpointer.log_pages >= LOG_PAGES:
                checkpointer.log_pages = 0
                self._checkpoint = asyncio.create_task(self._checkpoint_between(raw))
            else:
                checkpointer.committed()
        return out

    async def _checkpoint_between(self, raw: Any) -> None:
        """The checkpoint the next transaction waits for (see _run_sqlite): after the background one, which
        would otherwise keep it from copying anything."""
        assert self._writer is not None and self._checkpointer is not None
        await self._checkpointer.idle()
        try:
            await self._writer.run(lambda: _checkpoint(raw))
        except sqlite3.Error as exc:
            self._checkpointer.failed(exc, between=True)
        else:
            self._checkpointer.succeeded(between=True)

    def release_write_connection(self) -> None:
        """Close the connection that SQLite write transactions share; the next one opens a new connection (with
        the engine's connect listeners as they are then). It is closed in the writer thread, after a checkpoint
        that may still be running on it."""
        if self._write_conn is not None:
            assert self._writer is not None  # both exist on SQLite only
            conn, self._write_conn = self._write_conn, None
            if self._checkpoint is not None:
                self._checkpoint.cancel()  # one already handed to the writer thread still runs before the close
                self._checkpoint = None

            def close() -> None:
                with contextlib.suppress(SQLAlchemyError, sqlite3.Error):
                    conn.invalidate()  # the driver's connection is closed, not put back in the pool
                    conn.close()

            self._writer.submit(close)

    async def drain_writes(self) -> None:
        """Wait until every submitted write is committed (shutdown)."""
        if self._write_task is not None and not self._write_task.done():
            await self._write_queue.join()

    @asynccontextmanager
    async def begin(self, *, readonly: bool = False) -> AsyncIterator[AsyncConnection]:
        """One transaction; commits on success. Driver and connection failures raise StoreUnavailable.
        `readonly` transactions must not write; on SQLite they do not take the write lock."""
        engine = self._read_engine if readonly else self.engine
        try:
            async with engine.begin() as conn:
                yield conn
        except (TimeoutError, OperationalError, DBAPIError, OSError, ConnectionError) as exc:
            raise StoreUnavailable(describe_db_error(exc)) from exc
        except SQLAlchemyError as exc:
            if _is_connection_problem(exc):
                raise StoreUnavailable(describe_db_error(exc)) from exc
            raise

    async def ping(self) -> None:
        async with self.begin(readonly=True) as conn:
            await conn.execute(text("SELECT 1"))

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic), one replica at a time on PostgreSQL."""
        async with self.begin() as conn:
            if not self.is_sqlite:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            await conn.run_sync(_upgrade)

    async def dispose(self) -> None:
        await self.drain_writes()
        if self._write_task is not None:
            self._write_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._write_task
            self._write_task = None
        await self.engine.dispose()
        if self._checkpointer is not None:
            await self._checkpointer.idle()
            self._checkpointer.close()
        self.release_write_connection()
        if self.writer_engine is not None:
            self.writer_engine.dispose()
        if self._writer is not None:
            self._writer.stop()


_Call = tuple[Callable[[], Any], asyncio.AbstractEventLoop | None, asyncio.Future[Any] | None]


class _WriterThread:
    """The one thread where the store's SQLite calls that may block run: a commit with its disk flush, a
    checkpoint, a BEGIN that waits for another process's write lock, the close of the write connection. It holds
    the GIL only to take a call and to hand its outcome to the loop (a thread pool's futures and callbacks took it
    several times per call, each time making the loop, busy with requests, wait for it)."""

    def __init__(self, name: str = "sqlite-writer") -> None:
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None]
        self._calls = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def run(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """`fn()` in the writer thread; the future is settled on the calling loop."""
        self._start()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._calls.put((fn, loop, fut))
        return fut

    def submit(self, fn: Callable[[], Any]) -> None:
        """`fn()` in the writer thread, after the calls before it; nobody waits for it."""
        self._start()
        self._calls.put((fn, None, None))

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            fn, loop, fut = call
            if loop is None or fut is None:
                try:
                    fn()
                except Exception:  # nobody waits for it; the thread must go on serving the store
                    log.exception("a call in the SQLite writer thread failed")
                continue
            try:
                outcome: tuple[bool, Any] = (True, fn())
            except BaseException as exc:  # handed to the awaiting coroutine, which decides
                outcome = (False, exc)
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(_resolve, fut, *outcome)

    def stop(self) -> None:
        if self._thread is not None:
            self._calls.put(None)
            self._thread.join()
            self._thread = None


class _Checkpointer:
    """Copies SQLite's log into the database file in its own thread, on its own connection, while write
    transactions go on (a PASSIVE checkpoint takes no lock that a writer needs). One at a time."""

    def __init__(self, database: str) -> None:
        self._database = database
        self._thread = _WriterThread("sqlite-checkpointer")
        self._conn: sqlite3.Connection | None = None  # opened, used and closed in the thread only
        self._pending: asyncio.Future[None] | None = None
        self.log_pages = 0  # pages the log held at the last checkpoint
        self._commits = 0  # since the last background checkpoint started
        self._failing: set[bool] = set()  # which kinds fail now: between transactions (True), background (False)

    def committed(self) -> None:
        """A write transaction committed: every BACKGROUND_CHECKPOINT_EVERY of them, a checkpoint starts, unless
        one is still under way; once MAX_COMMITS_UNSEEN went by without one, the log counts as full, so that the
        next transaction waits for a checkpoint (see Store._run_sqlite)."""
        self._commits += 1
        if self._pending is None or self._pending.done():
            if self._commits >= BACKGROUND_CHECKPOINT_EVERY:
                self._commits = 0
                self._pending = self._thread.run(self._run)
        elif self._commits >= MAX_COMMITS_UNSEEN:
            self._commits = 0
            self.log_pages = LOG_PAGES

    async def idle(self) -> None:
        """Return once no checkpoint of this checkpointer is under way."""
        if self._pending is not None:
            with contextlib.suppress(Exception):  # _run logs its own failures
                await self._pending

    def close(self) -> None:
        if self._pending is not None:  # it ran: its connection is closed in its thread
            self._thread.submit(self._close)
            self._pending = None
        self._thread.stop()

    def _run(self) -> None:
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(self._database, isolation_level=None, check_same_thread=False)
                self._conn.execute("PRAGMA synchronous=FULL")  # the copy is flushed before the log is reused
            self.log_pages = _checkpoint(self._conn)
        except sqlite3.Error as exc:
            # the write connection's checkpoint comes next: it keeps the log bounded should this one keep failing
            self.log_pages = LOG_PAGES
            self.failed(exc)
        else:
            self.succeeded()

    def failed(self, exc: BaseException, *, between: bool = False) -> None:
        """Log the first failure of a run of them (a full disk would otherwise log one per commit); `between`:
        the checkpoint between two transactions, else the background one."""
        if between in self._failing:
            return
        self._failing.add(between)
        if between:
            log.warning(
                "checkpoint of the SQLite log failed; the log grows until one succeeds: %s", describe_db_error(exc)
            )
        else:
            log.warning(
                "background checkpoint of the SQLite log failed; the checkpoints between transactions keep it from "
                "growing: %s",
                describe_db_error(exc),
            )

    def succeeded(self, *, between: bool = False) -> None:
        if between in self._failing:
            self._failing.discard(between)
            what = "checkpoints of the SQLite log between transactions" if between else "background checkpoints"
            log.info("%s succeed again", what)

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None


@dataclass(frozen=True, slots=True, eq=False)
class Batch(Generic[J, R]):
    """Items that are written together: `fn(conn, items)` returns one result per item, or the exception that item
    alone failed with. `on_commit` sees every item's result once the transaction is committed."""

    fn: Callable[[Connection, list[J]], list[R | Exception]]
    on_commit: Callable[[list[R | Exception]], None] | None = None


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
            _resolve(self.entries[0].future, True, value)
            return
        for e, v in zip(self.entries, value, strict=True):
            _resolve(e.future, not isinstance(v, Exception), v)
        if self.batch.on_commit is not None:
            self.batch.on_commit(value)

    def fail(self, exc: Exception) -> None:
        for e in self.entries:
            _resolve(e.future, False, exc)


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


def _resolve(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class _Undone(Exception):
    """A lone function raised: its transaction is rolled back instead of a savepoint, and `cause` is its outcome."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _run_each(conn: Connection, fns: list[Callable[[Connection], Any]]) -> list[tuple[bool, Any]]:
    """Each function in its own savepoint: one that raises is undone alone. A database error that voids the whole
    transaction (SQLite rolls back on a full disk) propagates and fails the batch. A function alone in its
    transaction needs no savepoint: the transaction itself is rolled back if it raises."""
    if len(fns) == 1:
        try:
            return [(True, fns[0](conn))]
        except IntegrityError as exc:
            raise _Undone(exc) from exc
        except SQLAlchemyError:
            raise
        except Exception as exc:
            raise _Undone(exc) from exc
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


def _configure_sqlite(engine: Engine, busy_timeout_ms: int = BUSY_TIMEOUT_MS, *, writer: bool = False) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below) so that every transaction takes the write lock up front: two writers
        # then queue on busy_timeout instead of failing on a lock upgrade.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # a 202 survives a power cut, not only a crash
        cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cur.execute("PRAGMA foreign_keys=ON")
        if writer:
            cur.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            cur.execute("PRAGMA wal_autocheckpoint=0")  # the store checkpoints after commits: see _checkpoint
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # readers (health, gauges, the operator API) take no write lock: in WAL mode they never block a writer
        options = conn.get_execution_options()
        if options.get(_BEGUN, False):
            return
        conn.exec_driver_sql("BEGIN" if options.get(_READONLY, False) else "BEGIN IMMEDIATE")


def _try_begin(raw: Any) -> bool:
    """BEGIN IMMEDIATE without waiting (the writer's connections have busy_timeout 0): False when another process
    holds the write lock."""
    try:
        raw.execute("BEGIN IMMEDIATE")
        return True
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return False
        raise


def _checkpoint(raw: Any) -> int:
    """Copy the log into the database file; returns how many pages the log holds. PASSIVE: neither readers nor
    the writer are waited for; what they still use is copied next time. A failure (a full disk) raises, and the
    log grows until a later checkpoint succeeds."""
    row = raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(row[1]) if row else 0


def _begin_waiting(raw: Any) -> None:
    """BEGIN IMMEDIATE, waiting up to BUSY_TIMEOUT_MS for another process's write lock (in the writer thread)."""
    raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    try:
        raw.execute("BEGIN IMMEDIATE")
    finally:
        raw.execute("PRAGMA busy_timeout=0")


def _upgrade(sync_conn: Connection) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = sync_conn
    # Alembic configures logging only from an ini file; we hand it none, so our log setup stays as it is.
    command.upgrade(cfg, "head")


def _is_connection_problem(exc: BaseException) -> bool:
    s = f"{type(exc).__name__} {exc}".lower()
    return any(w in s for w in ("connect", "closed", "timeout", "disk", "locked", "readonly", "full"))


def describe_db_error(exc: BaseException) -> str:
    """A one-line reason without SQL, parameters or credentials."""
    orig = getattr(exc, "orig", None) or exc
    name = type(orig).__name__
    msg = str(orig).splitlines()[0] if str(orig) else ""
    if "[SQL:" in msg:
        msg = msg.split("[SQL:")[0].strip()
    return f"{name}: {msg}"[:300] if msg else name
