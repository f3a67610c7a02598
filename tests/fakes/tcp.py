"""A loopback TCP proxy that can be cut, to take a real PostgreSQL away from the notifier (a restart, an outage)
without touching the server that other tests share, or stalled, to make it slow (a database that hangs). In front
of an HTTP server it can also act at the moment a reply comes back (`before_reply`), before the client has it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class TcpProxy:
    """A loopback TCP proxy that a test can cut, to take a real PostgreSQL away from the notifier."""

    def __init__(self, port: int, before_reply: Callable[[bytes], Awaitable[None]] | None = None) -> None:
        """`before_reply(asked)` is awaited before each piece of a reply is passed on, with every byte the client
        sent on that connection so far."""
        self.target = port
        self.before_reply = before_reply
        self.server: asyncio.Server | None = None
        self.conns: list[asyncio.StreamWriter] = []
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _pipe(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, asked: bytearray, reply: bool = False
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await r.read(65536):
                await self._flowing.wait()
                if self.before_reply is not None:  # a proxy without the hook keeps nothing of what passes
                    if reply:
                        await self.before_reply(bytes(asked))
                    else:
                        asked += data
                w.write(data)
                await w.drain()
        w.close()

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", self.target)
        self.conns += [w, uw]
        asked = bytearray()
        await asyncio.gather(self._pipe(r, uw, asked), self._pipe(ur, w, asked, reply=True))

    async def cut(self) -> None:
        """Every connection closed, and new ones refused until `start` again (on the same port)."""
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for c in self.conns:
            c.close()
        self.conns.clear()

    def stall(self) -> None:
        """Connections stay open, but nothing passes through them until `resume`."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()
