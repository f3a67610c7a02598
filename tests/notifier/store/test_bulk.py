"""The intake's bulk statements (store/bulk.py): on SQLite they bypass SQLAlchemy's execution, so these check that
they write and read what SQLAlchemy would, and fail as it would."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Column, DateTime, MetaData, String, Table, bindparam, create_engine, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from notifier.errors import StoreUnavailable
from notifier.settings import StorageSettings
from notifier.store import Batch, Store
from notifier.store.bulk import BulkRead, BulkWrite
from notifier.store.tables import intake_keys


def _rows(keys: list[str]) -> list[dict[str, Any]]:
    return [{"key": k, "notification_id": f"n-{k}", "expires_at": 1e12 + i} for i, k in enumerate(keys)]


async def test_a_bulk_insert_stores_every_row_and_one_the_database_refuses_fails_alone(store: Store) -> None:
    insert = BulkWrite(intake_keys.insert(), store.dialect)
    await store.run_in_transaction(lambda conn: insert.run(conn, _rows(["taken"])))

    def write(conn: Connection, keys: list[str]) -> list[str | Exception]:
        insert.run(conn, _rows(keys))  # "taken" violates the primary key: the whole statement fails
        return list(keys)

    keys = ["a", "b", "taken", "c", "d"]
    results = await asyncio.gather(*(store.run_batched(Batch(write), k) for k in keys), return_exceptions=True)

    assert results[:2] + results[3:] == ["a", "b", "c", "d"]  # retried one by one, as any refused batch is
    assert isinstance(results[2], StoreUnavailable)  # a 503 for that webhook: Alertmanager retries it
    assert "unique" in str(results[2]).lower() and "n-taken" not in str(results[2])  # the reason, no values
    async with store.begin(readonly=True) as conn:
        stored = {tuple(r) for r in await conn.execute(select(intake_keys.c.key, intake_keys.c.notification_id))}
    assert stored == {(k, f"n-{k}") for k in keys}


async def test_a_bulk_read_finds_what_sqlalchemy_finds_for_any_length_of_its_lists(store: Store) -> None:
    keys = [f"k{i}" for i in range(7)]
    insert = BulkWrite(intake_keys.insert(), store.dialect)
    await store.run_in_transaction(lambda conn: insert.run(conn, _rows(keys)))
    statement = select(intake_keys.c.key, intake_keys.c.notification_id).where(
        intake_keys.c.key.in_(bindparam("keys", expanding=True)),
        intake_keys.c.notification_id.in_(bindparam("ids", expanding=True)),
        intake_keys.c.expires_at.in_([1e12 + i for i in range(5)]),  # a constant of the statement
    )
    read = BulkRead(statement, store.dialect, ["keys", "ids"])
    cases = [
        (["k1", "k3", "nope"], ["n-k1", "n-k3", "n-k6"]),
        (keys, [f"n-{k}" for k in keys]),
        (["k2"], ["n-k2"]),
        ([], ["n-k2"]),  # an empty list selects nothing
    ]
    for wanted, ids in cases:
        params = {"keys": wanted, "ids": ids}

        def both(conn: Connection, params: dict[str, list[str]] = params) -> tuple[set[Any], set[Any]]:
            ours = {tuple(r) for r in read.rows(conn, params)}
            theirs = {tuple(r) for r in conn.execute(statement, params)} if all(params.values()) else set()
            return ours, theirs

        ours, theirs = await store.run_in_transaction(both)
        assert ours == theirs, wanted
    assert ours == set()


def test_a_bulk_statement_takes_only_columns_the_driver_binds_as_they_are() -> None:
    metadata = MetaData()
    table = Table("t", metadata, Column("id", String, primary_key=True), Column("at", DateTime))
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn, pytest.raises(ValueError, match="at"):  # not written as the driver would take it
        BulkWrite(table.insert(), "sqlite").run(conn, [{"id": "a", "at": datetime(2026, 12, 6, tzinfo=UTC)}])
    with engine.connect() as conn:
        assert conn.execute(select(table)).all() == []
    with pytest.raises(ValueError, match="at"):
        BulkRead(select(table.c.id).where(table.c.at.in_(bindparam("at", expanding=True))), "sqlite", ["at"])


async def test_a_failing_sqlite_database_raises_sqlalchemys_error_so_the_batch_fails_as_unavailable(
    sqlite_url: str,
) -> None:
    store = Store(StorageSettings(url=sqlite_url))
    await store.migrate()
    insert = BulkWrite(intake_keys.insert(), store.dialect)
    seen: list[BaseException] = []

    def write(conn: Connection) -> None:
        conn.exec_driver_sql("PRAGMA query_only = ON")  # as a read-only file would: every write is refused
        try:
            insert.run(conn, _rows(["x"]))
        except BaseException as exc:
            seen.append(exc)
            raise
        finally:
            conn.exec_driver_sql("PRAGMA query_only = OFF")

    try:
        with pytest.raises(StoreUnavailable):
            await store.run_in_transaction(write)
        assert isinstance(seen[0], OperationalError)  # the database's failure, not one of the function's own
    finally:
        await store.dispose()
