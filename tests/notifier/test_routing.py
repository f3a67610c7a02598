"""Routing: Alertmanager-style matchers and route tree (pure)."""

from __future__ import annotations

import pytest

from notifier.config import load_settings_from_mapping
from notifier.matchers import parse_matcher
from notifier.routing import Router


def router(routes: dict[str, object]) -> Router:
    names = ["default", "oncall", "team", "audit", "grid"]
    s = load_settings_from_mapping({"receivers": [{"name": n, "log": [{}]} for n in names], "routes": routes}, env={})
    return Router(s.routes)


@pytest.mark.parametrize(
    ("matcher", "labels", "expected"),
    [
        ('severity="critical"', {"severity": "critical"}, True),
        ('severity="critical"', {"severity": "warning"}, False),
        ('severity!="critical"', {"severity": "warning"}, True),
        ('severity!="critical"', {}, True),
        ('severity=~"warning|info"', {"severity": "info"}, True),
        ('severity=~"warning|info"', {"severity": "informational"}, False),  # anchored, as in Alertmanager
        ('bot!~"grid-.*"', {"bot": "dca-eth"}, True),
        ('bot!~"grid-.*"', {"bot": "grid-btc"}, False),
        ('team=""', {}, True),  # a missing label matches the empty string
        ("severity=critical", {"severity": "critical"}, True),  # unquoted value
        ('summary="a \\"quoted\\" word"', {"summary": 'a "quoted" word'}, True),
    ],
)
def test_matchers(matcher: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(matcher).matches(labels) is expected


@pytest.mark.parametrize("bad", ["severity", "=x", 'a=~"("', 'severity=="x"', "1abc=x"])
def test_bad_matchers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"matcher|regular expression"):
        parse_matcher(bad)


def test_first_matching_child_wins_continue_goes_on_and_default_catches_the_rest() -> None:
    r = router(
        {
            "receiver": "default",
            "routes": [
                {"matchers": ['severity="critical"'], "receivers": ["oncall"], "continue": True},
                {"matchers": ['severity=~"critical|warning"'], "receivers": ["team"]},
                {"matchers": ['severity="warning"'], "receivers": ["audit"]},  # shadowed by the route above
                {
                    "matchers": ['strategy="grid"'],
                    "receivers": ["grid"],
                    "routes": [{"matchers": ['severity="info"'], "receivers": ["audit"]}],
                },
            ],
        }
    )
    assert [m.receiver for m in r.match({"severity": "critical"})] == ["oncall", "team"]
    assert [m.receiver for m in r.match({"severity": "warning"})] == ["team"]
    assert [m.receiver for m in r.match({"severity": "info", "strategy": "grid"})] == ["audit"]
    assert [m.receiver for m in r.match({"severity": "page", "strategy": "grid"})] == ["grid"]
    assert [m.receiver for m in r.match({"severity": "info"})] == ["default"]


def test_children_inherit_quiet_hours_and_repeat_interval() -> None:
    s = load_settings_from_mapping(
        {
            "receivers": [{"name": "a", "log": [{}]}, {"name": "b", "log": [{}]}],
            "quiet_hours": {"night": {"times": [{"start": "22:00", "end": "07:00"}]}},
            "routes": {
                "receiver": "a",
                "repeat_interval": "1h",
                "quiet_hours": {"schedule": "night", "mode": "silent"},
                "routes": [
                    {"matchers": ['x="1"'], "receivers": ["b"]},
                    {"matchers": ['x="2"'], "receivers": ["b"], "repeat_interval": "0"},
                ],
            },
        },
        env={},
    )
    m1 = Router(s.routes).match({"x": "1"})[0]
    assert (
        m1.repeat_interval is not None
        and float(m1.repeat_interval) == 3600
        and m1.quiet_hours is not None
        and m1.quiet_hours.mode == "silent"
    )
    m2 = Router(s.routes).match({"x": "2"})[0]
    assert m2.repeat_interval is not None and float(m2.repeat_interval) == 0
