"""Shared fixtures: the store under test (SQLite and a real PostgreSQL), fakes, and the services switch.

With NOTIFIER_REQUIRE_SERVICES=1 (set by .ci/run) a test that would skip for a missing server or binary fails.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.push import FakeNtfy, FakePushover
from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import SMTPServer
from tests.fakes.telegram import FakeTelegram
from tests.helpers import PG_ADMIN_URL, binary, free_port, need, wait_http

collect_ignore_glob: list[str] = []


def _pg_reachable() -> bool:
    import asyncpg

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


@pytest.fixture(scope="session")
def pg_available() -> bool:
    return _pg_reachable()


@pytest.fixture
def pg_url(pg_available: bool) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    need(pg_available, "PostgreSQL at 127.0.0.1:5432")
    import asyncpg

    name = f"notifier_t_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    asyncio.run(drop())


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/notifier.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/notifier.db"


@pytest.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    fake = await FakeTelegram().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = await FakeSlack().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def ntfy() -> AsyncIterator[FakeNtfy]:
    fake = await FakeNtfy().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def pushover() -> AsyncIterator[FakePushover]:
    fake = await FakePushover().start()
    yield fake
    await fake.stop()


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    """aiosmtpd on loopback, keeping what it accepts."""
    server = SMTPServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # the SDKs must reach the loopback fakes directly, whatever the machine's proxy settings
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Any]:
    """Starts Debian's Alertmanager 0.25 on a free port with a given config."""
    exe = binary("prometheus-alertmanager")
    procs: list[subprocess.Popen[bytes]] = []

    def start(config: Path) -> str:
        port = free_port()
        data = tmp_path / f"am-{port}"
        data.mkdir()
        log = (tmp_path / f"am-{port}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    exe,
                    f"--config.file={config}",
                    f"--storage.path={data}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/-/ready")
        return url

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


@pytest.fixture
def alertmanager_cluster(tmp_path: Path) -> Iterator[Any]:
    """Starts Debian's Alertmanager 0.25 as a gossip cluster of peers on loopback, each with its own config (as
    in an HA pair, where each peer posts to its own notifier replica): start([config, ...], peer_timeout="2s")
    returns their URLs once the cluster has settled."""
    exe = binary("prometheus-alertmanager")
    procs: list[subprocess.Popen[bytes]] = []

    def start(configs: list[Path], peer_timeout: str = "2s") -> list[str]:
        ports = [(free_port(), free_port()) for _ in configs]
        urls = []
        for i, (config, (web_port, mesh_port)) in enumerate(zip(configs, ports, strict=True)):
            data = tmp_path / f"am-peer-{i}"
            data.mkdir()
            peers = [f"--cluster.peer=127.0.0.1:{m}" for j, (_w, m) in enumerate(ports) if j != i]
            log = (tmp_path / f"am-peer-{i}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [
                        exe,
                        f"--config.file={config}",
                        f"--storage.path={data}",
                        f"--web.listen-address=127.0.0.1:{web_port}",
                        f"--cluster.listen-address=127.0.0.1:{mesh_port}",
                        f"--cluster.advertise-address=127.0.0.1:{mesh_port}",
                        f"--cluster.peer-timeout={peer_timeout}",
                        "--cluster.settle-timeout=5s",
                        "--cluster.gossip-interval=100ms",
                        "--cluster.pushpull-interval=5s",
                        *peers,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            urls.append(f"http://127.0.0.1:{web_port}")
        for url in urls:
            wait_http(f"{url}/-/ready", timeout=60)
        return urls

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)
