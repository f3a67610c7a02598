"""How a notification's body is kept: as sent when it is small, compressed when it is not.

A body over one database page would take a chain of overflow pages, each written to the log and again to the
database file. A large group's alerts repeat the same labels and annotations, so a 100-alert body of 38 KiB packs to
1.3 KiB with Zstandard at level -1 in some 12 µs: the intake writes a thirtieth of the pages and the database grows a
thirtieth as fast. Level 1 packs it to 1.0 KiB in 15 µs when timed alone, but on the event loop, amid every other
request, it cost more than those 3 µs: the intake benchmark's durable 100-alert throughput was 4 and 6 % higher with
level -1 in two A/B runs (presumably because level 1 works with a hash table twice as large, which the other
requests push out of the CPU's caches). zlib level 1, used first, took 35 µs for 1.7 KiB. Small bodies stay readable
in `payload` with any SQLite or PostgreSQL client.

The packed column keeps its first name, `payload_zlib`: rows written by earlier versions hold zlib streams there, and
they stay readable (a Zstandard frame is told from a zlib stream by its magic number).
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
    """The (payload, payload_zlib) column values for a body: the text with no blob, or '' with the packed blob."""
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
