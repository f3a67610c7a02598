"""The redelivery keys SQLite keeps in memory: a key counts until its notification's window ends, a key taken again
belongs to its new holder, and what expired is swept out (the memory they take is bounded by the window)."""

from __future__ import annotations

from notifier.pipeline.intake import RecentKeys


def test_a_key_counts_until_its_window_ends() -> None:
    keys = RecentKeys(sweep_every=60.0)
    keys.add("a", "N1", expires_at=100.0)
    keys.add("b", "N2", expires_at=160.0)
    assert keys.live(["a", "b", "c"], now=99.0) == {"a": "N1", "b": "N2"}
    assert keys.live(["a", "b"], now=100.0) == {"b": "N2"}  # between two sweeps, too
    assert keys.live(["a", "b"], now=160.0) == {}


def test_expired_keys_are_swept_out_at_the_next_sweep() -> None:
    keys = RecentKeys(sweep_every=60.0)
    assert keys.live([], now=0.0) == {}  # the first look sweeps; the next sweep is due at 60
    for i in range(1000):
        keys.add(f"k{i}", f"N{i}", expires_at=float(i))
    keys.live([], now=59.0)
    assert len(keys) == 1000  # not yet
    keys.live([], now=500.0)
    assert len(keys) == 499  # 501 ... 999 expire after 500
    keys.live([], now=540.0)
    assert len(keys) == 499  # the next sweep is due at 560
    keys.live([], now=10_000.0)
    assert len(keys) == 0


def test_a_key_taken_again_belongs_to_its_new_holder() -> None:
    keys = RecentKeys(sweep_every=0.0)
    keys.add("a", "N1", expires_at=100.0)
    keys.add("a", "N2", expires_at=300.0)  # stored again after its first window, with a window of its own
    assert keys.live(["a"], now=150.0) == {"a": "N2"}  # the first expiry does not take the new holder's key
    assert len(keys) == 1
    assert keys.live(["a"], now=300.0) == {}
    assert len(keys) == 0
