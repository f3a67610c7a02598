"""The per-receiver diff that decides whether a webhook is news: checked against its definition in sets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from notifier.changes import diff_states
from notifier.domain import Change

states = st.dictionaries(st.sampled_from([f"fp{i}" for i in range(12)]), st.sampled_from(["firing", "resolved"]))


def by_definition(base: dict[str, str], current: dict[str, str]) -> Change:
    def having(d: dict[str, str], s: str) -> set[str]:
        return {fp for fp, v in d.items() if v == s}

    firing, resolved = having(current, "firing"), having(current, "resolved")
    unseen_resolved = {fp for fp in resolved if fp not in base}
    return Change(
        new=len((firing - having(base, "firing")) | unseen_resolved),
        resolved=len(resolved - having(base, "resolved")),
        still_firing=len(firing & having(base, "firing")),
    )


@given(states, states)
def test_diff_matches_its_definition(base: dict[str, str], current: dict[str, str]) -> None:
    assert diff_states(base, current) == by_definition(base, current)


@given(states)
def test_an_unchanged_or_first_seen_group_matches_the_definition_too(current: dict[str, str]) -> None:
    # the short cuts for a group unchanged since (equal dicts) and one seen for the first time (empty base)
    assert diff_states(dict(current), current) == by_definition(current, current)
    assert diff_states({}, current) == by_definition({}, current)


def test_diff_examples() -> None:
    assert diff_states({}, {"a": "firing", "b": "resolved"}) == Change(new=2, resolved=1)
    assert diff_states({"a": "firing"}, {"a": "firing"}) == Change(still_firing=1)
    assert diff_states({"a": "firing"}, {"a": "resolved"}) == Change(resolved=1)
    assert diff_states({"a": "resolved"}, {"a": "firing"}) == Change(new=1)
