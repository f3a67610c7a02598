"""Schema upgrades keep what was stored: a database at schema 0005, with a large body packed in `payload_zlib`, is
upgraded at start, and the body reads back whole from `payload_packed`, on both stores."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from notifier.settings import StorageSettings
from notifier.store import Store
from notifier.store.payloads import pack
from tests.helpers import fixture_bytes
from tests.notifier.harness import stored_notification

MIGRATIONS = Path(__file__).resolve().parents[3] / "notifier" / "store" / "migrations"


async def test_an_upgrade_from_0005_keeps_packed_bodies(store_url: str) -> None:
    body = fixture_bytes("01-critical-firing-two-alerts.json") * 3  # over a page: packed
    text, packed = pack(body)
    assert packed is not None and text == ""
    store = Store(StorageSettings(url=store_url))
    try:
        async with store.engine.begin() as conn:

            def to_0005(sync_conn: sa.Connection) -> None:
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS))
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, "0005")
                sync_conn.execute(
                    sa.text(
                        "INSERT INTO notifications (id, received_at, am_receiver, group_key, status, alert_count,"
                        " redelivery_key, payload, payload_zlib) VALUES ('OLD', :t, 'am', 'g', 'firing', 2, 'k',"
                        " '', :blob)"
                    ),
                    {"t": time.time(), "blob": packed},
                )

            await conn.run_sync(to_0005)
        await store.migrate()  # what `notifier serve` does at start
        async with store.begin(readonly=True) as conn:
            row = await stored_notification(conn, "OLD")
        assert row is not None and row["payload"] == body.decode()
    finally:
        await store.dispose()
