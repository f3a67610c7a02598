"""How a notification's body is kept: as sent when it is small, zlib-compressed when it is not.

A body over one database page would take a chain of overflow pages, each written to the log and again to the
database file. A large group's alerts repeat the same labels and annotations, so a 100-alert body of 38 KiB packs to
under 2 KiB (level 1, ~25 µs): the intake writes a twentieth of the pages and the database grows a twentieth as fast.
Small bodies stay readable in `payload` with any SQLite or PostgreSQL client.
"""

from __future__ import annotations

import zlib

COMPRESS_ABOVE = 4096  # bytes: one SQLite page


def pack(body: bytes) -> tuple[str, bytes | None]:
    """The (payload, payload_zlib) column values for a body: the text with no blob, or '' with the packed blob."""
    if len(body) > COMPRESS_ABOVE:
        return "", zlib.compress(body, 1)
    return body.decode("utf-8"), None


def unpack(payload: str, packed: bytes | None) -> bytes:
    """The body as it was received, from the two columns."""
    return zlib.decompress(packed) if packed is not None else payload.encode("utf-8")
