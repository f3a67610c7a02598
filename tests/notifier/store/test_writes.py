"""The store's write path: group commit of batched items, what happens when the database refuses a batch, another
process holding SQLite's write lock, and row ids."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Connection, make_url

from notifier.errors import StoreUnavailable, StoreUnreachable
from notifier.settings import StorageSettings
from notifier.store import Batch, Store, new_id
from notifier.store.groupcommit import GroupCommit, Outcomes
from notifier.store.tables import intake_keys


def _key_rows(items: list[str]) -> list[dict[str, Any]]:
    return [{"key": k, "notification_id": f"n-{k}", "expires_at": 1e12} for k in items]


async def _stored_keys(store: Store) -> set[str]:
    async with store.begin(readonly=True) as conn:
        return {r[0] for r in (await conn.execute(select(intake_keys.c.key))).all()}


async def test_batched_items_share_calls_and_each_gets_its_own_result(store: Store) -> None:
    calls: list[list[str]] = []
    committed: list[list[Any]] = []

    def write(conn: Connection, items: list[str]) -> list[str | Exception]:
        calls.append(list(items))
        conn.execute(intake_keys.insert(), _key_rows(items))
        return [f"stored {k}" for k in items]

    batch: Batch[str, str] = Batch(write, on_commit=committed.append)
    keys = [f"k{i}" for i in range(40)]
    results = await asyncio.gather(*(store.run_batched(batch, k) for k in keys))

    assert results == [f"stored {k}" for k in keys]  # each caller gets its own item's result
    assert len(calls) < len(keys)  # submitted together, written together
    assert sorted(k for c in calls for k in c) == sorted(keys)
    assert sorted(r for c in committed for r in c) == sorted(results)  # on_commit saw every committed result
    assert await _stored_keys(store) == set(keys)


async def test_one_item_the_database_refuses_fails_alone(store: Store) -> None:
    await store.run_in_transaction(lambda conn: conn.execute(intake_keys.insert(), _key_rows(["taken"])))

    def write(conn: Connection, items: list[str]) -> list[str | Exception]:
        conn.execute(intake_keys.insert(), _key_rows(items))  # "taken" violates the primary key: the whole insert
        return list(items)

    batch: Batch[str, str] = Batch(write)
    keys = ["a", "b", "taken", "c", "d"]
    results = await asyncio.gather(*(store.run_batched(batch, k) for k in keys), return_exceptions=True)

    assert results[:2] + results[3:] == ["a", "b", "c", "d"]
    assert isinstance(results[2], StoreUnavailable)  # a 503 for that webhook: Alertmanager retries it
    assert "unique" in str(results[2]).lower() and "n-taken" not in str(results[2])  # the reason, no parameters
    assert await _stored_keys(store) == {"taken", "a", "b", "c", "d"}


async def test_a_database_out_of_reach_fails_a_batch_at_once_and_a_refused_batch_item_by_item() -> None:
    """Items of a batch the database refused are tried alone (one of them may be what it refused); items of a batch
    that could not reach the database are not: one attempt each would hold every write queued behind them (webhooks
    whose sender stops waiting meanwhile) for nothing."""
    for failure, attempts in ((StoreUnreachable("ConnectionRefusedError"), 1), (StoreUnavailable("refused"), 21)):
        calls: list[int] = []

        async def run(fns: list[Any], failure: Exception = failure, calls: list[int] = calls) -> Outcomes:
            calls.append(len(fns))
            raise failure

        writes = GroupCommit(run)
        batch: Batch[int, int] = Batch(lambda conn, items: list(items))
        results = await asyncio.gather(*(writes.submit_item(batch, i) for i in range(20)), return_exceptions=True)
        assert all(r is failure for r in results)  # each answered 503: Alertmanager retries
        assert len(calls) == attempts, failure


async def test_an_item_whose_own_decision_fails_does_not_take_the_batch_down(store: Store) -> None:
    def write(conn: Connection, items: list[str]) -> list[str | Exception]:
        good = [k for k in items if k != "bad"]
        conn.execute(intake_keys.insert(), _key_rows(good))
        return [ValueError("cannot decide") if k == "bad" else k for k in items]

    batch: Batch[str, str] = Batch(write)
    results = await asyncio.gather(*(store.run_batched(batch, k) for k in ["x", "bad", "y"]), return_exceptions=True)
    assert results[0] == "x" and results[2] == "y"
    assert isinstance(results[1], ValueError)
    assert await _stored_keys(store) == {"x", "y"}


async def test_a_batch_given_up_as_a_whole_is_retried_item_by_item(store: Store) -> None:
    sizes: list[int] = []

    def write(conn: Connection, items: list[str]) -> list[str | Exception]:
        sizes.append(len(items))
        if len(items) > 1:
            raise StoreUnavailable("conflict with another replica")
        conn.execute(intake_keys.insert(), _key_rows(items))
        return list(items)

    batch: Batch[str, str] = Batch(write)
    keys = [f"r{i}" for i in range(6)]
    assert await asyncio.gather(*(store.run_batched(batch, k) for k in keys)) == keys
    assert sizes[0] > 1 and sizes.count(1) >= len(keys)
    assert await _stored_keys(store) == set(keys)


async def test_sqlite_write_waits_for_another_process_lock_while_the_loop_keeps_serving(sqlite_url: str) -> None:
    store = Store(StorageSettings(url=sqlite_url))
    await store.migrate()
    other = sqlite3.connect(str(make_url(sqlite_url).database), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # a backup, `notifier prune`, or an operator's sqlite3 shell
        write = asyncio.create_task(
            store.run_in_transaction(lambda conn: conn.execute(intake_keys.insert(), _key_rows(["late"])))
        )
        ticks = 0
        started = time.monotonic()
        while time.monotonic() - started < 0.5:
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks >= 20  # the event loop was not blocked by the wait for the lock
        assert not write.done()
        other.execute("COMMIT")
        await asyncio.wait_for(write, timeout=10)
        assert await _stored_keys(store) == {"late"}
    finally:
        other.close()
        await store.dispose()


async def test_the_write_connection_let_go_while_a_transaction_waits_on_it_is_closed_only_after_it(
    sqlite_url: str,
) -> None:
    """A full disk or a shutdown lets go of the write connection while a transaction may still wait in the writer
    thread: that transaction ends on it before it is closed (closed under it, the write would fail or the process
    crash), and the next transaction opens a new one."""
    store = Store(StorageSettings(url=sqlite_url))
    await store.migrate()
    assert store.sqlite_writer is not None
    other = sqlite3.connect(str(make_url(sqlite_url).database), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(
            store.run_in_transaction(lambda conn: conn.execute(intake_keys.insert(), _key_rows(["waited"])))
        )
        await asyncio.sleep(0.2)
        assert not write.done()
        store.sqlite_writer.release()
        other.execute("COMMIT")
        await asyncio.wait_for(write, timeout=10)
        await store.run_in_transaction(lambda conn: conn.execute(intake_keys.insert(), _key_rows(["next"])))
        assert await _stored_keys(store) == {"waited", "next"}
    finally:
        other.close()
        await store.dispose()


async def _write_through_log(store: Store, db: str) -> int:
    """600 transactions of 10 rows of about a page each (some 24 MB through the log); the log's largest size."""
    padding = "x" * 3000
    largest_log = 0
    for n in range(600):
        rows = [{"key": f"k{n}-{i}-{padding}", "notification_id": "n", "expires_at": 1e12} for i in range(10)]
        await store.run_in_transaction(functools.partial(_insert_keys, rows=rows))
        largest_log = max(largest_log, os.stat(db + "-wal").st_size)
    return largest_log


@pytest.mark.parametrize("background", ["on time", "slow"])
async def test_sqlite_log_is_copied_into_the_database_and_starts_over_under_steady_writes(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, background: str
) -> None:
    """The store checkpoints the write-ahead log itself (SQLite's own checkpoint would make one commit's webhooks
    wait for it): under a steady stream of writes the log must still be copied into the database file and start
    over, instead of growing with everything ever written. On a busy machine the background checkpoint may take
    long, and the log's size is only known when one reports it: after a bounded number of commits without a
    report, a transaction waits for a checkpoint of its own, so the bound holds then too."""
    if background == "slow":
        from notifier.store import sqlite

        run = sqlite.Checkpointer._run

        def slow_run(self: Any) -> None:
            time.sleep(0.1)
            run(self)

        monkeypatch.setattr(sqlite.Checkpointer, "_run", slow_run)
    db = str(make_url(sqlite_url).database)
    store = Store(StorageSettings(url=sqlite_url))
    await store.migrate()
    try:
        largest_log = await _write_through_log(store, db)
        # it starts over at about LOG_PAGES pages (4 MB), as with SQLite's own checkpoints
        assert largest_log < 6_000_000, f"the log grew to {largest_log} bytes"
    finally:
        await store.dispose()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:  # everything committed is in the database
        assert c.execute("SELECT count(*) FROM intake_keys").fetchone() == (6000,)


async def test_the_log_is_copied_in_the_background_while_no_transaction_waits(sqlite_url: str) -> None:
    """A few small transactions, far from the size at which a transaction waits for a checkpoint: the background
    checkpointer has still copied all they wrote into the database file."""
    db = str(make_url(sqlite_url).database)
    store = Store(StorageSettings(url=sqlite_url))
    await store.migrate()
    try:
        for n in range(8):  # a background checkpoint every 4 commits
            rows = [{"key": f"k{n}", "notification_id": "n", "expires_at": 1e12}]
            await store.run_in_transaction(functools.partial(_insert_keys, rows=rows))

        def in_database_file() -> int:
            # immutable: the file alone, without the log (a read may race the copy: then try again)
            try:
                with sqlite3.connect(f"file:{db}?immutable=1", uri=True) as c:
                    return int(c.execute("SELECT count(*) FROM intake_keys").fetchone()[0])
            except sqlite3.DatabaseError:
                return -1

        deadline = asyncio.get_running_loop().time() + 10
        while in_database_file() != 8:
            assert asyncio.get_running_loop().time() < deadline, "the log was not copied into the database file"
            await asyncio.sleep(0.05)
    finally:
        await store.dispose()


async def test_a_failing_background_checkpoint_is_logged_once_and_the_log_stays_bounded(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The background checkpointer cannot open the database (as with a full disk or a lost mount): one warning,
    not one per commit, and the checkpoint that transactions wait for keeps the log from growing."""
    db = str(make_url(sqlite_url).database)
    store = Store(StorageSettings(url=sqlite_url))
    await store.migrate()
    assert store.sqlite_writer is not None and store.sqlite_writer.checkpointer is not None
    store.sqlite_writer.checkpointer._database = str(tmp_path / "missing" / "notifier.db")
    try:
        with caplog.at_level(logging.WARNING, logger="notifier.store"):
            largest_log = await _write_through_log(store, db)
        assert largest_log < 6_000_000, f"the log grew to {largest_log} bytes"
        failures = [r.getMessage() for r in caplog.records if "SQLite log failed" in r.getMessage()]
        assert len(failures) == 1, failures
        assert failures[0].startswith("background checkpoint") and "unable to open database file" in failures[0]
    finally:
        await store.dispose()


def test_ids_are_ulids_that_sort_by_creation_time() -> None:
    first = [new_id() for _ in range(1000)]
    time.sleep(0.002)
    later = new_id()
    assert len(set(first)) == 1000
    assert all(len(i) == 26 and set(i) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for i in first)
    assert all(i < later for i in first)


def _insert_keys(conn: Connection, rows: list[dict[str, Any]]) -> None:
    conn.execute(intake_keys.insert(), rows)
