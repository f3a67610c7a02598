"""PostgreSQL plans the intake's statements by the table as it is, not by statistics that ANALYZE may or may not
have gathered: on a fresh database whose tables were filled and never analysed, every lookup of the intake uses an
index, and no statement keeps a generic plan made while its table was small."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from notifier.settings import StorageSettings
from notifier.store import Store
from notifier.store.intake import IntakeQueries
from notifier.store.redelivery import TableKeys
from notifier.store.tables import intake_keys

BIG = ("intake_keys", "notifications", "deliveries", "group_state", "threads")


def _fill(conn: Connection, rows: int) -> None:
    """History as a busy notifier leaves it, written straight in SQL; autovacuum kept away, so nothing is analysed."""
    for table in BIG:
        conn.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
    conn.execute(
        text(
            "INSERT INTO notifications SELECT 'N' || i, i, 'am', 'g' || i, 'firing', 1, md5(i::text), '{}', NULL "
            "FROM generate_series(1, :n) i"
        ),
        {"n": rows},
    )
    conn.execute(
        text("INSERT INTO intake_keys SELECT md5(i::text), 'N' || i, 1e12 FROM generate_series(1, :n) i"), {"n": rows}
    )
    conn.execute(
        text(
            "INSERT INTO deliveries (id, notification_id, receiver, target, channel, group_key, group_hash, state, "
            "kind, silent, change, attempts, parts_sent, created_at, updated_at, next_attempt_at) "
            "SELECT 'D' || i, 'N' || i, 'ops', 'ops/telegram', 'telegram', 'g' || i, md5('g' || i), 'sent', "
            "'alert', false, '{}', 1, 1, i, i, i FROM generate_series(1, :n) i"
        ),
        {"n": rows},
    )
    conn.execute(
        text("INSERT INTO group_state SELECT 'ops', md5('g' || i), 'g' || i, '{}', i FROM generate_series(1, :n) i"),
        {"n": rows},
    )
    conn.execute(
        text("INSERT INTO threads SELECT 'ops/telegram', md5('g' || i), 'ref', i FROM generate_series(1, :n) i"),
        {"n": rows},
    )


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def test_intake_lookups_use_indexes_on_a_fresh_unanalysed_database(pg_url: str) -> None:
    store = Store(StorageSettings(url=pg_url))
    await store.migrate()
    queries = IntakeQueries("postgresql")
    keys = TableKeys()
    hashes = ["0" * 64, "1" * 64]
    keys_in = ["a" * 32, "b" * 32]
    params: dict[str, Any] = {
        "receivers": ["ops"],
        "targets": ["ops/telegram"],
        "hashes": hashes,
        "keys": keys_in,
        "ids": ["N1", "N2"],
        "now": 1.0,
    }
    expired = keys._expired.whereclause
    assert expired is not None
    statements: dict[str, Any] = {
        "group states": queries._groups.statement,
        "waiting messages": queries._waiting.statement,
        "threads": queries._threads.statement,
        "payloads": queries._payloads.statement,
        "live keys": keys._live,
        # a DELETE's rows are found as a SELECT with its WHERE finds them
        "expired keys": select(intake_keys.c.key).where(expired),
    }
    try:
        async with store.begin() as conn:
            # while the tables are empty, as on a new installation: the statements run, and are planned, often
            for _ in range(8):
                await conn.run_sync(lambda c: queries.load(c, ["ops"], ["ops/telegram"], hashes))
                await conn.run_sync(lambda c: keys.live(c, keys_in, 1.0))
            await conn.run_sync(_fill, 20_000)
            analysed = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_user_tables WHERE relname = ANY(:t) "
                        "AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)"
                    ),
                    {"t": list(BIG)},
                )
            ).scalar()
            assert analysed == 0
            # the statements as the intake runs them, prepared by the driver: none kept a generic plan
            for _ in range(8):
                await conn.run_sync(lambda c: queries.load(c, ["ops"], ["ops/telegram"], hashes))
                await conn.run_sync(lambda c: keys.live(c, keys_in, 1.0))
            generic = await conn.execute(
                text(
                    "SELECT statement, generic_plans FROM pg_prepared_statements "
                    "WHERE cardinality(parameter_types) > 0 AND generic_plans > 0"
                )
            )
            assert generic.all() == []
            for name, stmt in statements.items():
                names = stmt.compile(dialect=postgresql.dialect()).binds.keys()  # type: ignore[no-untyped-call]
                bound = stmt.params({k: v for k, v in params.items() if k in names})
                sql = bound.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})  # type: ignore[no-untyped-call]
                plan = (await conn.execute(text(f"EXPLAIN (FORMAT JSON) {sql}"))).scalar()
                assert plan is not None
                root = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
                scans = {(n["Node Type"], n.get("Relation Name")) for n in _nodes(root) if "Relation Name" in n}
                assert scans, name
                assert all(kind != "Seq Scan" for kind, _ in scans), f"{name}: {scans}"
    finally:
        await store.dispose()
