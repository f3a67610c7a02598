"""Local TCP ports for the stack: whether something answers on one, and which process holds a port the stack
needs, so that a clash is reported with its holder instead of a process that dies at start."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def answers(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def taken(wanted: dict[str, int]) -> list[str]:
    """Each of the named loopback ports that cannot be bound, with what holds it."""
    busy = []
    for name, port in wanted.items():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                busy.append(f"port {port} ({name}) is taken by {holder(port)}")
    return busy


def holder(port: int) -> str:
    """The process listening on a local TCP port, as `pid N (command)`, found through /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd).removeprefix("socket:[").rstrip("]") in inodes:
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                    return f"pid {proc.name} ({cmd[:120]})"
        except OSError:
            continue
    return "another process (not visible from here)"
