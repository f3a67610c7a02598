"""What the intake takes from a payload's alerts (`summarize`): the redelivery key, the alert states, the counts per
severity and status, and the group's severity, checked against a plain reading of the same payload."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.alertmanager import decode_payload, summarize, to_group
from notifier.domain import Severity

SURROGATES: tuple[Literal["Cs"]] = ("Cs",)  # lone surrogates cannot be encoded

SEVERITIES = ["critical", "warning", "info", "", "Page", "CRITICAL"]
TIMES = ["2026-11-26T04:05:13Z", "2026-11-26T04:05:13.25Z", "2026-11-25T23:59:59Z", "0001-01-01T00:00:00Z"]

alert = st.fixed_dictionaries(
    {
        "fingerprint": st.text("0123456789abcdef", min_size=1, max_size=16),
        "status": st.sampled_from(["firing", "resolved"]),
        "severity": st.sampled_from([*SEVERITIES, None]),
        "startsAt": st.sampled_from(TIMES),
        "endsAt": st.sampled_from(TIMES),
        # NUL and lone surrogates are refused at intake
        "summary": st.text(st.characters(exclude_characters="\x00", exclude_categories=SURROGATES), max_size=8),
    }
)


def payload(alerts: list[dict[str, Any]], *, common: bool = True, **top: Any) -> dict[str, Any]:
    """A webhook of these alerts; commonLabels as Alertmanager computes it (the labels all alerts share)."""
    items = []
    for a in alerts:
        labels = {"alertname": "X", **({} if a["severity"] is None else {"severity": a["severity"]})}
        items.append(
            {
                "status": a["status"],
                "labels": labels,
                "annotations": {"summary": a["summary"]},
                "startsAt": a["startsAt"],
                "endsAt": a["endsAt"],
                "fingerprint": a["fingerprint"],
            }
        )
    shared = dict(items[0]["labels"])
    for item in items[1:]:
        shared = {k: v for k, v in shared.items() if item["labels"].get(k) == v}
    doc = {
        "version": "4",
        "groupKey": '{}:{alertname="X"}',
        "status": "firing",
        "receiver": "notifier",
        "alerts": items,
        "commonLabels": shared if common else {},
        "externalURL": "http://am-1:9093",
    }
    doc.update(top)
    return doc


def summary_of(doc: dict[str, Any]) -> Any:
    return summarize(decode_payload(json.dumps(doc).encode()))


@settings(max_examples=300, deadline=None)
@given(st.lists(alert, min_size=1, max_size=12), st.booleans())
def test_states_counts_and_severity_are_those_of_the_alerts(alerts: list[dict[str, Any]], common: bool) -> None:
    doc = payload(alerts, common=common)
    s = summary_of(doc)
    p = decode_payload(json.dumps(doc).encode())
    assert s.states == {a.fingerprint: a.status for a in p.alerts}
    assert s.counts == dict(Counter((Severity.of(a.labels), a.status) for a in p.alerts))
    assert s.severity == to_group(p).severity


@settings(max_examples=300, deadline=None)
@given(st.lists(alert, min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_a_copy_in_another_order_or_from_another_peer_has_the_same_key(alerts: list[dict[str, Any]], rnd: Any) -> None:
    first = payload(alerts)
    shuffled = list(alerts)
    rnd.shuffle(shuffled)
    # what Alertmanager HA peers may send differently for the same notification
    copy = payload([{**a, "summary": a["summary"] + "!"} for a in shuffled], externalURL="http://am-2:9093")
    assert summary_of(copy).key == summary_of(first).key


@settings(max_examples=300, deadline=None)
@given(
    st.lists(alert, min_size=1, max_size=12, unique_by=lambda a: a["fingerprint"]),
    st.data(),
)
def test_any_change_of_the_group_gives_another_key(alerts: list[dict[str, Any]], data: Any) -> None:
    before = summary_of(payload(alerts)).key
    i = data.draw(st.integers(0, len(alerts) - 1))
    field = data.draw(st.sampled_from(["status", "startsAt", "endsAt", "fingerprint"]))
    changed = [dict(a) for a in alerts]
    old = changed[i][field]
    if field == "status":
        changed[i]["status"] = "resolved" if old == "firing" else "firing"
    elif field == "fingerprint":
        changed[i]["fingerprint"] = old + "f"
    else:
        changed[i][field] = data.draw(st.sampled_from([t for t in TIMES if t != old]))
    assert summary_of(payload(changed)).key != before
    assert summary_of(payload(alerts, groupKey='{}:{alertname="Y"}')).key != before
    assert summary_of(payload(alerts, receiver="other")).key != before
    fewer = alerts[:i] + alerts[i + 1 :]
    if fewer:
        assert summary_of(payload(fewer)).key != before


def test_one_instant_written_two_ways_is_one_key() -> None:
    a = {"fingerprint": "ab", "status": "firing", "severity": "critical", "summary": ""}
    utc = payload([{**a, "startsAt": "2026-11-26T04:05:13Z", "endsAt": "0001-01-01T00:00:00Z"}])
    berlin = payload([{**a, "startsAt": "2026-11-26T05:05:13+01:00", "endsAt": "0001-01-01T00:00:00Z"}])
    later = payload([{**a, "startsAt": "2026-11-26T05:05:13Z", "endsAt": "0001-01-01T00:00:00Z"}])
    assert summary_of(utc).key == summary_of(berlin).key != summary_of(later).key


def test_a_repeated_fingerprint_is_keyed_as_a_set() -> None:
    """Alertmanager never repeats a fingerprint in a group; if a sender does, the order still does not count."""
    a = {"fingerprint": "ab", "severity": "warning", "summary": "", "endsAt": "0001-01-01T00:00:00Z"}
    rows = [
        {**a, "status": "firing", "startsAt": TIMES[0]},
        {**a, "status": "resolved", "startsAt": TIMES[1]},
        {**a, "fingerprint": "aa", "status": "firing", "startsAt": TIMES[2]},
    ]
    keys = {summary_of(payload(order)).key for order in (rows, rows[::-1], [rows[1], rows[2], rows[0]])}
    assert len(keys) == 1


def test_mixed_severities_without_a_common_one_are_counted_per_alert() -> None:
    a = {"summary": "", "startsAt": TIMES[0], "endsAt": TIMES[3]}
    doc = payload(
        [
            {**a, "fingerprint": "1", "status": "firing", "severity": "info"},
            {**a, "fingerprint": "2", "status": "resolved", "severity": "critical"},
            {**a, "fingerprint": "3", "status": "firing", "severity": None},
        ]
    )
    assert "severity" not in doc["commonLabels"]
    s = summary_of(doc)
    assert s.counts == {
        (Severity.INFO, "firing"): 1,
        (Severity.CRITICAL, "resolved"): 1,
        (Severity.WARNING, "firing"): 1,  # no severity label counts as warning
    }
    assert s.severity == Severity.CRITICAL
