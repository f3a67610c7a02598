"""Redelivery keys. In memory (SQLite): a key counts until its notification's window ends, a key taken again
belongs to its new holder, and what expired is swept out (the memory they take is bounded by the window). On both
stores, through the implementation chosen at start: a stored key holds for its window, across a restart."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Connection

from notifier.store import Store
from notifier.store.intake import IntakeQueries, StoredNotification, Writes
from notifier.store.redelivery import KeyConflict, MemoryKeys, RedeliveryKeys, redelivery_keys


def test_a_key_counts_until_its_window_ends() -> None:
    keys = MemoryKeys(window=600.0)
    keys.add("a", "N1", expires_at=100.0)
    keys.add("b", "N2", expires_at=160.0)
    assert keys.held(["a", "b", "c"], now=99.0) == {"a": "N1", "b": "N2"}
    assert keys.held(["a", "b"], now=100.0) == {"b": "N2"}  # between two sweeps, too
    assert keys.held(["a", "b"], now=160.0) == {}


def test_expired_keys_are_swept_out_at_the_next_sweep() -> None:
    keys = MemoryKeys(window=600.0)
    assert keys.held([], now=0.0) == {}  # the first look sweeps; the next sweep is due at 60
    for i in range(1000):
        keys.add(f"k{i}", f"N{i}", expires_at=float(i))
    keys.held([], now=59.0)
    assert len(keys) == 1000  # not yet
    keys.held([], now=500.0)
    assert len(keys) == 499  # 501 ... 999 expire after 500
    keys.held([], now=540.0)
    assert len(keys) == 499  # the next sweep is due at 560
    keys.held([], now=10_000.0)
    assert len(keys) == 0


def test_a_key_taken_again_belongs_to_its_new_holder() -> None:
    keys = MemoryKeys(window=0.0)
    keys.add("a", "N1", expires_at=100.0)
    keys.add("a", "N2", expires_at=300.0)  # stored again after its first window, with a window of its own
    assert keys.held(["a"], now=150.0) == {"a": "N2"}  # the first expiry does not take the new holder's key
    assert len(keys) == 1
    assert keys.held(["a"], now=300.0) == {}
    assert len(keys) == 0


def _stored(nid: str, key: str, at: float) -> StoredNotification:
    return StoredNotification(
        id=nid,
        received_at=at,
        am_receiver="am",
        group_key="{}:{}",
        status="firing",
        alert_count=1,
        redelivery_key=key,
        payload="{}",
        payload_packed=None,
    )


async def test_a_stored_key_holds_for_its_window_on_both_stores_and_after_a_restart(store: Store) -> None:
    """The implementation the store chooses at start: a key counts once its transaction committed, until the
    window ends; a new instance (a restart) still sees it; on PostgreSQL a key another replica holds is refused."""
    window = 100.0
    keys = redelivery_keys(store.dialect, window)
    queries = IntakeQueries(store.dialect)

    def store_one(conn: Connection) -> dict[str, str]:
        before = keys.live(conn, ["k1"], 1000.0)
        queries.write(conn, Writes(notifications=[_stored("N1", "k1", 1000.0)]))
        keys.hold(conn, {"k1": "N1"}, 1000.0, 1000.0 + window)
        return before

    assert await store.run_in_transaction(store_one) == {}
    keys.committed({"k1": "N1"}, 1000.0 + window)

    async def live(k: RedeliveryKeys, now: float) -> dict[str, str]:
        return await store.run_in_transaction(lambda conn: k.live(conn, ["k1", "k2"], now))

    assert await live(keys, 1050.0) == {"k1": "N1"}
    assert await live(keys, 1100.0) == {}
    restarted = redelivery_keys(store.dialect, window)
    assert await live(restarted, 1099.0) == {"k1": "N1"}

    if store.dialect == "postgresql":  # replicas share the table: a live key taken meanwhile is a conflict
        other = redelivery_keys(store.dialect, window)

        def take_again(conn: Connection) -> None:
            queries.write(conn, Writes(notifications=[_stored("N2", "k1", 1050.0)]))
            other.hold(conn, {"k1": "N2"}, 1050.0, 1150.0)

        with pytest.raises(KeyConflict):
            await store.run_in_transaction(take_again)
        assert await live(keys, 1060.0) == {"k1": "N1"}
    else:
        assert isinstance(keys, MemoryKeys)
