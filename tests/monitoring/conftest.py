"""Helpers for tests on the real Prometheus and Alertmanager binaries (Debian's prometheus, prometheus-alertmanager)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers import ROOT, free_port, need

MON = ROOT / "monitoring"


def binary(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"the {name} binary (Debian package prometheus / prometheus-alertmanager)")
    assert path is not None
    return path


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=120, cwd=ROOT)


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


def local_alertmanager_config(tmp: Path, webhook_url: str, token: str, **route_overrides: Any) -> Path:
    """The shipped config, pointed at a local notifier, with the token file written next to it."""
    cfg = yaml.safe_load((MON / "alertmanager" / "alertmanager.yml").read_text())
    token_file = tmp / "notifier_token"
    token_file.write_text(token)
    for r in cfg["receivers"]:
        for w in r.get("webhook_configs", []):
            w["url"] = webhook_url
            w["http_config"]["authorization"]["credentials_file"] = str(token_file)
    for route in cfg["route"]["routes"]:
        route.update(route_overrides)
    cfg["route"].update(route_overrides)
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


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
