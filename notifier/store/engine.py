"""The store's engine: one async SQLAlchemy engine for SQLite (aiosqlite, WAL, synchronous=FULL) or PostgreSQL
(asyncpg), Alembic migrations, and the translation of driver failures into StoreUnavailable."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from notifier.errors import StoreUnavailable
from notifier.settings import StorageSettings

T = TypeVar("T")
log = logging.getLogger("notifier.store")
_MIGRATIONS = Path(__file__).parent / "migrations"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_READONLY = "notifier_readonly"
_MIGRATION_LOCK = 0x6E6F7469  # PostgreSQL advisory lock id, so replicas starting together migrate one at a time
# Ids need uniqueness, not secrecy: a generator seeded from the OS once, instead of a system call per id.
_ids = random.Random(int.from_bytes(os.urandom(16), "big"))  # noqa: S311 -- ids, not secrets


def new_id() -> str:
    """A ULID: 48 bits of milliseconds and 80 random bits, 26 characters, sortable by creation time."""
    n = (int(time.time() * 1000) << 80) | _ids.getrandbits(80)
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[n & 31])
        n >>= 5
    return "".join(reversed(out))


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


class Store:
    """The notifier's database: engine, migrations, transactions; every driver failure surfaces as StoreUnavailable."""

    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self.url = async_url(settings.url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            db = make_url(self.url).database
            if db and db != ":memory:":
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_size"] = settings.pool_size
            kwargs["max_overflow"] = settings.pool_size
            kwargs["pool_pre_ping"] = True
            kwargs["pool_timeout"] = settings.connect_timeout
            kwargs["connect_args"] = {"timeout": settings.connect_timeout, "command_timeout": 30}
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self._read_engine = self.engine.execution_options(**{_READONLY: True})
        self._write_queue: asyncio.Queue[tuple[Callable[[Connection], Any], asyncio.Future[Any]]] = asyncio.Queue()
        self._write_task: asyncio.Task[None] | None = None
        self.writer_engine: Engine | None = None
        self._writer: ThreadPoolExecutor | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine.sync_engine)
            # Intake batches run in one thread on the plain sqlite3 driver: one hop per batch instead of several per
            # statement (aiosqlite), which under load each wait for the GIL.
            self.writer_engine = create_engine(
                self.url.replace("sqlite+aiosqlite", "sqlite+pysqlite", 1),
                connect_args={"timeout": 30, "check_same_thread": False},
            )
            _configure_sqlite(self.writer_engine)
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")

    async def run_in_transaction(self, fn: Callable[[Connection], T]) -> T:
        """Run a synchronous write function and return once it is durably committed.

        Every write of the process goes through here. Functions submitted while a commit is under way are run
        together in the next transaction, each in its own savepoint, and share one commit (one disk flush): group
        commit for intake, claims and delivery outcomes alike. On SQLite the transaction runs in the one writer
        thread, so no two connections of this process contend for the write lock; on PostgreSQL it runs through the
        async engine. A function's own exception is raised to its caller only; a failed commit raises
        StoreUnavailable to every caller of that transaction."""
        if self._write_task is None or self._write_task.done():
            self._write_task = asyncio.create_task(self._write_loop(), name="store-writer")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._write_queue.put((fn, fut))
        result: T = await fut
        return result

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._write_queue.get()]
            while not self._write_queue.empty() and len(batch) < 512:
                batch.append(self._write_queue.get_nowait())
            live = [(fn, fut) for fn, fut in batch if not fut.cancelled()]
            outcomes = await self._run_guarded([fn for fn, _ in live]) if live else []
            if len(live) > 1 and all(not ok and isinstance(v, StoreUnavailable) for ok, v in outcomes):
                # the shared transaction failed: one function's writes may be what the database refused, so each
                # is retried alone and only that one fails
                outcomes = [(await self._run_guarded([fn]))[0] for fn, _ in live]
            for (_fn, fut), (ok, value) in zip(live, outcomes, strict=True):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
            for _ in batch:
                self._write_queue.task_done()

    async def _run_guarded(self, fns: list[Callable[[Connection], Any]]) -> list[tuple[bool, Any]]:
        try:
            return await self._run_batch(fns)
        except _Undone as undone:  # a lone function raised: its transaction was rolled back
            return [(False, undone.cause)]
        except StoreUnavailable as exc:
            return [(False, exc)] * len(fns)
        except Exception as exc:
            log.warning("write transaction failed: %s", describe_db_error(exc))
            return [(False, StoreUnavailable(describe_db_error(exc)))] * len(fns)

    async def _run_batch(self, fns: list[Callable[[Connection], Any]]) -> list[tuple[bool, Any]]:
        if self._writer is None:
            async with self.begin() as conn:
                result: list[tuple[bool, Any]] = await conn.run_sync(_run_each, fns)
            return result
        loop = asyncio.get_running_loop()
        done: list[tuple[bool, Any]] = await loop.run_in_executor(self._writer, self._sync_batch, fns)
        return done

    def _sync_batch(self, fns: list[Callable[[Connection], Any]]) -> list[tuple[bool, Any]]:
        assert self.writer_engine is not None
        try:
            with self.writer_engine.begin() as conn:
                return _run_each(conn, fns)
        except (OperationalError, DBAPIError, OSError) as exc:
            raise StoreUnavailable(describe_db_error(exc)) from exc

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
        if self.writer_engine is not None:
            self.writer_engine.dispose()


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


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below) so that every transaction takes the write lock up front: two writers
        # then queue on busy_timeout instead of failing on a lock upgrade.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # a 202 survives a power cut, not only a crash
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # readers (health, gauges, the operator API) take no write lock: in WAL mode they never block a writer
        readonly = conn.get_execution_options().get(_READONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


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
