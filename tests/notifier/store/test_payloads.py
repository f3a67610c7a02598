"""How bodies are kept: small ones as text, large ones packed; bodies packed by earlier versions still read back."""

from __future__ import annotations

import json
import threading
import zlib

from hypothesis import given
from hypothesis import strategies as st

from notifier.store.payloads import COMPRESS_ABOVE, ZSTD_MAGIC, pack, unpack
from tests.helpers import make_group


def test_a_small_body_stays_readable_text() -> None:
    body = json.dumps(make_group(2)).encode()
    assert len(body) <= COMPRESS_ABOVE
    assert pack(body) == (body.decode(), None)
    assert unpack(*pack(body)) == body


def test_a_large_body_is_packed_small_and_reads_back_byte_for_byte() -> None:
    body = json.dumps(make_group(100)).encode()
    text, packed = pack(body)
    assert text == ""
    assert packed is not None and packed.startswith(ZSTD_MAGIC)
    assert len(packed) * 20 < len(body)
    assert unpack(text, packed) == body


def test_a_body_packed_with_zlib_by_an_earlier_version_reads_back() -> None:
    body = json.dumps(make_group(100)).encode()
    assert unpack("", zlib.compress(body, 1)) == body


def test_a_damaged_packed_body_reads_as_none_not_an_exception() -> None:
    _, packed = pack(json.dumps(make_group(100)).encode())
    assert packed is not None
    assert unpack("", packed[: len(packed) // 2]) is None  # a torn frame
    assert unpack("", ZSTD_MAGIC + b"\x00" * 40) is None  # a frame header that makes no sense
    assert unpack("", b"not zlib at all") is None


def test_threads_pack_at_the_same_time_without_mixing_bodies() -> None:
    bodies = [json.dumps(make_group(60, group_key=f'{{}}:{{t="{i}"}}')).encode() for i in range(4)]
    failures: list[int] = []

    def work(i: int) -> None:
        for _ in range(200):
            text, packed = pack(bodies[i])
            if unpack(text, packed) != bodies[i]:
                failures.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


@given(st.binary(min_size=0, max_size=3 * COMPRESS_ABOVE))
def test_any_body_round_trips(raw: bytes) -> None:
    body = raw.decode("latin-1").encode("utf-8")  # bodies are UTF-8 JSON text
    assert unpack(*pack(body)) == body
