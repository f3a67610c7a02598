"""The notifier's own dead-man's switch: it calls the heartbeat URL while it can store and deliver, and stops calling
(so that the external service alarms) when its store refuses writes or its worker stops; the URL's token never
reaches a log."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import event

from notifier.errors import ConfigError
from tests.helpers import console_settings, free_port, wait_for
from tests.notifier.harness import running

CHECK = "5f1c9a7e-heartbeat-token"


class PingServer:
    """A dead-man's-switch service on loopback: counts the calls to /ping/<check>."""

    def __init__(self) -> None:
        self.pings = 0
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def _ping(self, request: web.Request) -> web.Response:
        if request.match_info["check"] != CHECK:
            return web.Response(status=404)
        self.pings += 1
        return web.Response(text="OK")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ping/{check}", self._ping)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ping/{CHECK}"


async def test_pings_while_healthy_and_stops_when_the_store_refuses_writes(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = PingServer()
    await server.start()
    secret = tmp_path / "heartbeat_url"
    secret.write_text(server.url + "\n")
    s = console_settings(sqlite_url, heartbeat={"url_file": str(secret), "interval": "1h"})
    assert CHECK not in repr(s)
    caplog.set_level(logging.INFO)
    try:
        async with running(s) as (client, rt):
            await wait_for(lambda: server.pings == 1, timeout=10)  # the first call goes out at start

            # the store turns read-only (as a full or broken disk would): no more calls, so the service alarms
            writer = rt.store.sqlite_writer
            assert writer is not None
            engine = writer.engine
            assert engine is not None

            def read_only(dbapi_conn: Any, _rec: Any) -> None:
                dbapi_conn.execute("PRAGMA query_only=1")

            event.listen(engine, "connect", read_only)
            writer.release()
            assert await rt.heartbeat.beat() == "withheld"
            assert server.pings == 1
            assert "heartbeat withheld" in caplog.text and "store:" in caplog.text

            event.remove(engine, "connect", read_only)
            writer.release()
            assert await rt.heartbeat.beat() == "sent"
            assert server.pings == 2

            await rt.worker.stop()  # nothing would be delivered: no call either
            assert await rt.heartbeat.beat() == "withheld"
            assert "worker: not running" in caplog.text
            await rt.worker.start()

            await server.stop()  # the service is unreachable: reported, by kind only
            assert await rt.heartbeat.beat() == "failed"
            assert "heartbeat call failed: ConnectError" in caplog.text
            metrics = (await client.get("/metrics")).text
            assert 'notifier_heartbeats_total{outcome="sent"} 2.0' in metrics
            assert 'notifier_heartbeats_total{outcome="withheld"} 2.0' in metrics
            assert 'notifier_heartbeats_total{outcome="failed"} 1.0' in metrics
    finally:
        if server.runner is not None:
            await server.runner.cleanup()
    # the notifier's own lines never show the URL (the served process also keeps httpx's request log at WARNING)
    assert not [r for r in caplog.records if r.name.startswith("notifier") and CHECK in r.getMessage()]
    assert any(r.name == "notifier.heartbeat" for r in caplog.records)


def test_heartbeat_config_is_checked(sqlite_url: str) -> None:
    with pytest.raises(ConfigError, match=r"heartbeat\.url: required \(or url_file\)"):
        console_settings(sqlite_url, heartbeat={"interval": "1m"})
    with pytest.raises(ConfigError, match=r"heartbeat\.url: expected an http:// or https:// URL"):
        console_settings(sqlite_url, heartbeat={"url": "hc-ping.com/abc"})
