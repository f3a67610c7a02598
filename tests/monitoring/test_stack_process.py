"""`make stack` as a person runs it: it refuses to start on a port that is taken, naming who holds it, and every way
of stopping it (Ctrl-C, SIGTERM, SIGHUP) stops every process it started and exits 0."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, binary, free_port

STACK = [sys.executable, str(ROOT / "scripts" / "stack.py"), "--scenario", "normal", "--redis-url", ""]


def base_port() -> int:
    """Seven free ports in a row."""
    for _ in range(50):
        base = free_port()
        if base > 65000:
            continue
        socks = []
        try:
            for p in range(base, base + 7):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no seven free ports in a row")


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_taken_port_is_refused_naming_its_holder(tmp_path: Path) -> None:
    binary("prometheus")
    binary("prometheus-alertmanager")
    base = base_port()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{base + 3})); s.listen(); time.sleep(60)",
        ]
    )
    try:
        time.sleep(0.5)
        r = subprocess.run(
            [*STACK, "--postgres-dsn", "", "--base-port", str(base), "--workdir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 1
        assert f"port {base + 3} (notifier) is taken by pid {holder.pid}" in r.stderr
        assert not any(listening(p) for p in (base, base + 1, base + 2))  # nothing was started
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_every_way_of_stopping_stops_every_process(tmp_path: Path, sig: signal.Signals) -> None:
    binary("prometheus")
    binary("prometheus-alertmanager")
    base = base_port()
    proc = subprocess.Popen(
        [*STACK, "--postgres-dsn", "", "--base-port", str(base), "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("The stack runs") or not line:
                break
        assert lines and lines[-1].startswith("The stack runs"), "".join(lines)
        assert all(listening(p) for p in range(base, base + 4))
        # links in alerts point at an address these loopback-bound servers answer on
        flags = httpx.get(f"http://127.0.0.1:{base + 1}/api/v1/status/flags", timeout=5).json()["data"]
        assert flags["web.external-url"] == f"http://127.0.0.1:{base + 1}/"
        proc.send_signal(sig)
        assert proc.wait(60) == 0
        # every server is gone (the fake Bot API, a thread of the stack, closes its port as the stack stops; on a
        # busy machine that can take a moment): a port still open after 10 s was left behind
        deadline = time.monotonic() + 10
        while (left := [p for p in range(base, base + 7) if listening(p)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left
    finally:
        if proc.poll() is None:
            proc.kill()
