"""How a notification's body is kept: as sent when it is small, packed with Zstandard when it is not.

A body over one database page would take a chain of overflow pages, each written to the log and again to the
database file. A large group's alerts repeat the same labels and annotations, so it packs to a small fraction of its
size: the intake writes far fewer pages and the database grows that much more slowly. The level is the fastest one
(-1), because packing runs on the event loop for every large webhook. Small bodies stay readable in `payload` with
any SQLite or PostgreSQL client.

Rows written by versions before 0005 hold zlib streams in `payload_packed`, and they stay readable: a Zstandard frame
is told from a zlib stream by its magic number.
"""

from __future__ import annotations

import logging
import threading
import zlib

import zstandard

log = logging.getLogger("notifier.store")
COMPRESS_ABOVE = 4096  # bytes: one SQLite page
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _Codecs(threading.local):
    """A compression context per thread: making one costs half as much as compressing a large body, and one
    context must not be used by two threads at once."""

    def __init__(self) -> None:
        self.packer = zstandard.ZstdCompressor(level=-1)
        self.unpacker = zstandard.ZstdDecompressor()


_codecs = _Codecs()


def pack(body: bytes) -> tuple[str, bytes | None]:
    """The (payload, payload_packed) column values for a body: the text with no blob, or '' with the packed blob."""
    if len(body) > COMPRESS_ABOVE:
        packed: bytes = _codecs.packer.compress(body)  # the frame records the body's size, for unpacking
        return "", packed
    return body.decode("utf-8"), None


def unpack(payload: str, packed: bytes | None) -> bytes | None:
    """The body as it was received, from the two columns; None when the packed body cannot be read (a damaged
    database file), so that the one message it belongs to is dead-lettered instead of every claim failing."""
    if packed is None:
        return payload.encode("utf-8")
    try:
        if packed[:4] == ZSTD_MAGIC:
            body: bytes = _codecs.unpacker.decompress(packed)
            return body
        return zlib.decompress(packed)  # written before Zstandard
    except (zstandard.ZstdError, zlib.error) as exc:
        log.error("a stored notification body cannot be unpacked: %s", exc)
        return None
