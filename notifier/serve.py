"""`notifier serve`: the notifier as the whole process. The store is reached and migrated and the port bound before
anything says the notifier is ready, so that what keeps it from starting is one line; then uvicorn serves the app
until SIGTERM or SIGINT, which end in a clean stop and exit code 0."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib.util
import signal
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from notifier.app import create_app
from notifier.errors import NotifierError, StoreUnavailable
from notifier.settings import Settings
from notifier.store import Store
from notifier.store.sqlite import claim_sqlite_store
from notifier.store.urls import redact_url


def serve(settings: Settings) -> int:
    """Run the notifier until a signal stops it: 0 after a clean stop, 1 when it did not start. What can keep it
    from starting is tried first and said in a line (a NotifierError): the SQLite store taken by another process,
    the store unreachable, the port taken."""
    claim = claim_sqlite_store(settings.storage.url)  # held until the process exits
    # what can keep it from starting is tried first, and said in a line: the store, then the port
    _store_answers(settings)
    listening = _listen(settings.server.host, settings.server.port)
    app = create_app(settings, own_process=True)
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        loop="uvloop" if _has("uvloop") else "asyncio",
        http="httptools" if _has("httptools") else "h11",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(settings.server.shutdown_timeout),
        server_header=False,
    )
    server = _GracefulServer(config)
    try:
        server.run(sockets=[listening])
    finally:
        listening.close()
        if claim is not None:
            claim.close()
    return 0 if server.started else 1


def _store_answers(settings: Settings) -> None:
    """Reach the store and bring its schema up to date, or raise StoreUnavailable saying why and where."""

    async def migrate() -> None:
        store = Store(settings.storage)
        try:
            await store.migrate()
        finally:
            await store.dispose()

    try:
        asyncio.run(migrate())
    except StoreUnavailable as exc:
        raise StoreUnavailable(
            f"the store at {redact_url(settings.storage.url)} is unavailable: {exc} (check storage.url, and that "
            "the database server runs and lets this user in)"
        ) from None


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything says the notifier is ready."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        why = "the address is in use (another notifier?)" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise NotifierError(
            f"cannot listen on {where}: {why}; give another with server.listen (or NOTIFIER_LISTEN with the default "
            "config)"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _graceful_server_class() -> type:
    class GracefulServer(uvicorn.Server):
        """uvicorn's server, except that SIGTERM/SIGINT end in exit code 0 once the graceful shutdown is done
        (uvicorn re-raises the signal afterwards, which makes every orderly stop look like a crash)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return GracefulServer


def _GracefulServer(config: Any) -> Any:  # noqa: N802 -- reads as the class it builds
    return _graceful_server_class()(config)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
