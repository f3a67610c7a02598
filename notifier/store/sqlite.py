"""SQLite specifics: the claim on a store file, the connection settings, and the write path -- one connection for
every write transaction, a writer thread for what blocks without the GIL, and the store's own checkpoints."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from notifier.errors import NotifierError, StoreUnavailable
from notifier.store.failures import describe_db_error
from notifier.store.groupcommit import Outcomes, run_each, settle
from notifier.store.urls import sqlite_file

T = TypeVar("T")
log = logging.getLogger("notifier.store")
READONLY = "notifier_readonly"  # an execution option: the transaction only reads (BEGIN, not BEGIN IMMEDIATE)
_BEGUN = "notifier_begun"  # the store's write path issues BEGIN IMMEDIATE itself
BUSY_TIMEOUT_MS = 30_000
# The writer's page cache holds the indexes that every webhook looks up and inserts into at random places
# (group hashes, the outbox); SQLite's default 2 MiB holds a few days of them, and each miss is a read from the OS
# on the event loop.
WRITER_CACHE_KIB = 32 * 1024
# Pages in SQLite's log (SQLite's own default) at which the next write transaction waits for a checkpoint, so that
# the log starts over; until then the background checkpointer copies it while transactions go on (see
# SQLiteWriter.run).
LOG_PAGES = 1000
# Commits between two background checkpoints: each flushes the log and the database file, so one per commit would
# spend the writer's time on flushes that the next commits make stale anyway.
BACKGROUND_CHECKPOINT_EVERY = 4
# Commits that may pass while a background checkpoint is still under way; then the next transaction waits for a
# checkpoint of its own. The log's size is only known when a checkpoint reports it, so without this bound a slow
# background checkpoint (a busy machine) would let the log grow unseen.
MAX_COMMITS_UNSEEN = 3 * BACKGROUND_CHECKPOINT_EVERY


def private_file(database: Path) -> None:
    """Create the database file and its folder for the notifier's user alone (0600, 0700), when they do not exist
    yet: the store holds alert contents, chat actions and session hashes. SQLite gives its log and shared-memory
    files the database file's mode. Existing ones are left as their owner set them."""
    if not database.parent.exists():
        database.parent.mkdir(parents=True, mode=0o700)
    if not database.exists():
        os.close(os.open(database, os.O_CREAT | os.O_WRONLY, 0o600))


def claim_sqlite_store(url: str) -> IO[bytes] | None:
    """On SQLite one process serves a store: its intake keeps the recent redelivery keys in memory and its rate
    limits are its own. `notifier serve` claims the store with a lock on `<database>.serve-lock`, held as long
    as the returned file is open (the process's life; the kernel lets go when it dies, even by kill -9). A second
    process is refused with the holder's pid. None for PostgreSQL and for a database in memory."""
    database = sqlite_file(url)
    if database is None:
        return None
    private_file(Path(database))
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


class SQLiteWriter:
    """Runs the store's write transactions on SQLite."""

    def __init__(self, url: str) -> None:
        """`url` is the store's (aiosqlite) URL; writes use the plain sqlite3 driver: aiosqlite would hop to its
        thread per statement."""
        database = sqlite_file(url)
        self.engine: Engine = create_engine(
            url.replace("sqlite+aiosqlite", "sqlite+pysqlite", 1),
            connect_args={"timeout": 30, "check_same_thread": False},
        )
        configure(self.engine, busy_timeout_ms=0, writer=True)  # busy_timeout 0: see _try_begin
        self.engine = self.engine.execution_options(**{_BEGUN: True})
        self._thread = WriterThread()
        self._conn: Connection | None = None
        self._active: Connection | None = None  # the connection a write transaction is on now
        self._checkpoint: asyncio.Task[None] | None = None  # the next transaction waits for it: see run
        # a database in memory has no log to copy
        self.checkpointer = Checkpointer(database) if database is not None else None

    async def run(self, fns: list[Callable[[Connection], Any]]) -> Outcomes:
        """One write transaction. Its statements run here, on the event loop: they are short, and run under the GIL
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
        if self._checkpoint is not None:
            with contextlib.suppress(Exception):  # _checkpoint_between reports its own failures
                await self._checkpoint
            self._checkpoint = None
        conn: Connection | None = None
        try:
            if self._conn is None:  # one connection for every write transaction, kept between them
                self._conn = self.engine.connect()
            conn = self._active = self._conn
            raw: Any = conn.connection.driver_connection
            if not _try_begin(raw):
                await self._thread.run(lambda: _begin_waiting(raw))
            with conn.begin():  # the listener sees _BEGUN and leaves the BEGIN to us
                out = run_each(conn, fns)
                # The driver's own commit, in the writer thread; SQLAlchemy's, when the block ends, then finds
                # the transaction committed and has nothing left to do.
                await self._thread.run(raw.commit)
        except (OperationalError, DBAPIError, OSError, sqlite3.Error) as exc:
            self.release()  # not trusted again: the next transaction opens a new one
            raise StoreUnavailable(describe_db_error(exc)) from exc
        finally:
            self._active = None
            if conn is not None and conn is not self._conn:  # released while this transaction ran on it
                self._close_later(conn)
        if conn is not self._conn:
            return out
        checkpointer = self.checkpointer
        if checkpointer is not None:  # a database in memory has no log
            if checkpointer.log_pages >= LOG_PAGES:
                checkpointer.log_pages = 0
                self._checkpoint = asyncio.create_task(self._checkpoint_between(raw))
            else:
                checkpointer.committed()
        return out

    async def _checkpoint_between(self, raw: Any) -> None:
        """The checkpoint the next transaction waits for (see run): after the background one, which
        would otherwise keep it from copying anything."""
        assert self.checkpointer is not None
        await self.checkpointer.idle()
        try:
            await self._thread.run(lambda: _checkpoint(raw))
        except sqlite3.Error as exc:
            self.checkpointer.failed(exc, between=True)
        else:
            self.checkpointer.succeeded(between=True)

    def release(self) -> None:
        """Close the connection that SQLite write transactions share; the next one opens a new connection (with
        the engine's connect listeners as they are then). It is closed in the writer thread, after a checkpoint
        that may still be running on it."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            if self._checkpoint is not None:
                self._checkpoint.cancel()  # one already handed to the writer thread still runs before the close
                self._checkpoint = None
            # Closing a connection while a statement runs on it crashes the process: one a transaction is on
            # (waiting for the writer thread) is closed by that transaction when it ends (see run).
            if conn is not self._active:
                self._close_later(conn)

    def _close_later(self, conn: Connection) -> None:
        def close() -> None:
            with contextlib.suppress(SQLAlchemyError, sqlite3.Error):
                conn.invalidate()  # the driver's connection is closed, not put back in the pool
                conn.close()

        self._thread.submit(close)

    async def close(self) -> None:
        if self.checkpointer is not None:
            await self.checkpointer.idle()
            self.checkpointer.close()
        self.release()
        self.engine.dispose()
        self._thread.stop()


_Call = tuple[Callable[[], Any], asyncio.AbstractEventLoop | None, asyncio.Future[Any] | None]


class WriterThread:
    """The one thread where the store's SQLite calls that may block run: a commit with its disk flush, a
    checkpoint, a BEGIN that waits for another process's write lock, the close of the write connection. It takes
    the GIL only to take a call and to hand its outcome to the loop, once each: the loop, busy with requests, waits
    for it no more than that."""

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
                loop.call_soon_threadsafe(settle, fut, *outcome)

    def stop(self) -> None:
        if self._thread is not None:
            self._calls.put(None)
            self._thread.join()
            self._thread = None


class Checkpointer:
    """Copies SQLite's log into the database file in its own thread, on its own connection, while write
    transactions go on (a PASSIVE checkpoint takes no lock that a writer needs). One at a time."""

    def __init__(self, database: str) -> None:
        self._database = database
        self._thread = WriterThread("sqlite-checkpointer")
        self._conn: sqlite3.Connection | None = None  # opened, used and closed in the thread only
        self._pending: asyncio.Future[None] | None = None
        self.log_pages = 0  # pages the log held at the last checkpoint
        self._commits = 0  # since the last background checkpoint started
        self._failing: set[bool] = set()  # which kinds fail now: between transactions (True), background (False)

    def committed(self) -> None:
        """A write transaction committed: every BACKGROUND_CHECKPOINT_EVERY of them, a checkpoint starts, unless
        one is still under way; once MAX_COMMITS_UNSEEN went by without one, the log counts as full, so that the
        next transaction waits for a checkpoint (see SQLiteWriter.run)."""
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


def configure(engine: Engine, busy_timeout_ms: int = BUSY_TIMEOUT_MS, *, writer: bool = False) -> None:
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
        conn.exec_driver_sql("BEGIN" if options.get(READONLY, False) else "BEGIN IMMEDIATE")


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
