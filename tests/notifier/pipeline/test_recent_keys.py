"""The redelivery keys SQLite keeps in memory: a key counts until its notification's window ends, a key taken again
belongs to its new holder, and what expired is forgotten (the memory they take is bounded by the window)."""

from __future__ import annotations

from notifier.pipeline.intake import RecentKeys


def test_a_key_counts_until_its_window_ends() -> None:
    keys = RecentKeys()
    keys.add("a", "N1", expires_at=100.0)
    keys.add("b", "N2", expires_at=160.0)
    assert keys.live(["a", "b", "c"], now=99.0) == {"a": "N1", "b": "N2"}
    assert keys.live(["a", "b"], now=100.0) == {"b": "N2"}
    assert keys.live(["a", "b"], now=160.0) == {}


def test_expired_keys_are_forgotten() -> None:
    keys = RecentKeys()
    for i in range(1000):
        keys.add(f"k{i}", f"N{i}", expires_at=float(i))
    assert len(keys) == 1000
    keys.live([], now=500.0)
    assert len(keys) == 499  # 501..999 expire after 500
    keys.live([], now=10_000.0)
    assert len(keys) == 0


def test_a_key_taken_again_belongs_to_its_new_holder() -> None:
    keys = RecentKeys()
    keys.add("a", "N1", expires_at=100.0)
    keys.add("a", "N2", expires_at=300.0)  # stored again after its first window, with a window of its own
    assert keys.live(["a"], now=150.0) == {"a": "N2"}  # the first expiry does not take the new holder's key
    assert len(keys) == 1
    assert keys.live(["a"], now=300.0) == {}
    assert len(keys) == 0
