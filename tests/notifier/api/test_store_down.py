"""When the store cannot commit, the webhook answers 503 (Alertmanager retries 5xx), never a 500, and readiness
says so; when the store is back, intake works again."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from sqlalchemy import event

from notifier.errors import StoreUnreachable
from tests.fakes.tcp import TcpProxy
from tests.helpers import console_settings, fixture_bytes
from tests.notifier.harness import count, post, running


async def test_postgres_down_gives_503_and_recovers(pg_url: str) -> None:
    proxy = TcpProxy(5432)
    await proxy.start()
    url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    s = console_settings(url, storage={"url": url, "connect_timeout": "2s"})
    async with running(s) as (client, rt):
        assert (await post(client, fixture_bytes("01-critical-firing-two-alerts.json"))).status_code == 202
        await proxy.cut()
        r = await post(client, fixture_bytes("02-info-firing-unicode.json"))
        assert r.status_code == 503, r.text
        assert r.headers.get("retry-after")
        assert "traceback" not in r.text.lower()
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "unavailable", "problems": ["store"]}  # the reason is in the log only
        with pytest.raises(StoreUnreachable):  # out of reach: a batch is not tried again item by item
            async with rt.store.begin():
                pass
        await proxy.start()  # the database is back, on the same port
        r = await post(client, fixture_bytes("02-info-firing-unicode.json"))
        assert r.status_code == 202, r.text
        assert (await client.get("/readyz")).status_code == 200
        assert await count(rt) == 2
        metrics = (await client.get("/metrics")).text
        assert 'notifier_webhooks_received_total{outcome="unavailable"} 1.0' in metrics


async def test_sqlite_full_gives_503_and_nothing_half_stored(sqlite_url: str) -> None:
    s = console_settings(sqlite_url)
    async with running(s) as (client, rt):
        assert (await post(client, fixture_bytes("01-critical-firing-two-alerts.json"))).status_code == 202

        # cap the database at its current size: the next write finds the disk full
        assert rt.store.sqlite_writer is not None

        @event.listens_for(rt.store.sqlite_writer.engine, "connect")
        def _cap(dbapi_conn: Any, _rec: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA page_count")
            pages = cur.fetchone()[0]
            cur.execute(f"PRAGMA max_page_count={pages}")
            cur.close()

        rt.store.sqlite_writer.release()
        big = (
            fixture_bytes("01-critical-firing-two-alerts.json")
            .replace(b"check_me_now", base64.b64encode(os.urandom(150_000)))  # large bodies are packed: random
            .replace(b"80186a74e3a77957", b"80186a74e3a77958")
        )
        r = await post(client, big)
        assert r.status_code == 503, r.text
        assert await count(rt) == 1

        # room again (the cap gone): Alertmanager's retry of the same body gets in
        event.remove(rt.store.sqlite_writer.engine, "connect", _cap)
        rt.store.sqlite_writer.release()
        r = await post(client, big)
        assert r.status_code == 202, r.text
        assert await count(rt) == 2
