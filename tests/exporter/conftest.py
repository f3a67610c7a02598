"""A seeded PostgreSQL, and a Redis server of the test's own that a test can kill and start again."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.exporter.bot_db import seed
from tests.helpers import free_port, need


@pytest.fixture
def seeded_pg(pg_url: str) -> str:
    seed(pg_url)
    return pg_url


@pytest.fixture
def redis_server(tmp_path: Path) -> Any:
    binary = shutil.which("redis-server")
    need(binary is not None, "redis-server binary")
    port = free_port()

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                str(binary),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        )

    proc = start()
    state = {"proc": proc, "port": port, "start": start}
    yield state
    state["proc"].kill()  # type: ignore[attr-defined]
