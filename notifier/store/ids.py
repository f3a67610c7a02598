"""Row ids: ULIDs, sortable by creation time."""

from __future__ import annotations

import os
import random
import re
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ROW_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")  # what a row id (a delivery's, a notification's) can look like
GROUP_HASH = re.compile(r"[0-9a-f]{64}")  # an alert group's id: the SHA-256 of its receiver and group key
# Ids need uniqueness, not secrecy: a generator seeded from the OS once, instead of a system call per id.
_ids = random.Random(int.from_bytes(os.urandom(16), "big"))  # noqa: S311 -- ids, not secrets


def new_id() -> str:
    """A ULID: 48 bits of milliseconds and 80 random bits as 26 Crockford base32 digits, most significant first."""
    return _encode((int(time.time() * 1000) << 80) | _ids.getrandbits(80))


def id_floor(t: float) -> str:
    """The smallest id made at unix time `t`: ids below it were made before (retention and time ranges use it)."""
    return _encode(int(t * 1000) << 80)


def _encode(n: int) -> str:
    """130 bits (the top two zero) as 26 Crockford base32 digits, most significant first."""
    return "".join(_CROCKFORD[n >> shift & 31] for shift in range(125, -1, -5))
