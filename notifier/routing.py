"""Routing: label matchers -> route tree -> receivers, as Alertmanager routes (pure, no I/O).

A route matches when all its matchers match. Its children are tried in order; the first that matches wins unless it
says `continue: true`, in which case later siblings are tried too. When no child matches, the route's own receivers
take the alert. Children inherit quiet hours and repeat_interval from their parent unless they set their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from notifier.settings import Duration, RouteQuietHours, RouteSettings

_MATCHER = re.compile(
    r"""^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>"(?:[^"\\]|\\.)*"|[^"\s]*)\s*$"""
)


class MatchOp(StrEnum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label condition."""

    name: str
    op: MatchOp
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")  # a missing label matches as the empty string, as in Alertmanager
        if self.op is MatchOp.EQ:
            return actual == self.value
        if self.op is MatchOp.NE:
            return actual != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(actual) is not None
        return found if self.op is MatchOp.RE else not found


def parse_matcher(text: str) -> Matcher:
    m = _MATCHER.match(text)
    if not m:
        raise ValueError(f'bad matcher {text!r}; expected name="value", name!="value", name=~"re" or name!~"re"')
    raw = m.group("value")
    value = raw[1:-1].encode().decode("unicode_escape") if raw.startswith('"') else raw
    op = MatchOp(m.group("op"))
    pattern = None
    if op in (MatchOp.RE, MatchOp.NRE):
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ValueError(f"bad regular expression in {text!r}: {exc}") from None
    return Matcher(m.group("name"), op, value, pattern)


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """A receiver chosen for an alert group, with the route's quiet hours and repeat interval."""

    receiver: str
    quiet_hours: RouteQuietHours | None
    repeat_interval: Duration | None
    route_path: str
    digest: bool = False


@dataclass(frozen=True, slots=True)
class _Node:
    matchers: tuple[Matcher, ...]
    receivers: tuple[str, ...]
    children: tuple[_Node, ...]
    cont: bool
    quiet_hours: RouteQuietHours | None
    repeat_interval: Duration | None
    path: str
    digest: bool = False


class Router:
    """The compiled route tree of one config."""

    def __init__(self, root: RouteSettings) -> None:
        self._root = self._compile(root, None, "routes")

    def _compile(self, r: RouteSettings, parent: _Node | None, path: str) -> _Node:
        qh = r.quiet_hours if r.quiet_hours is not None else (parent.quiet_hours if parent else None)
        ri = r.repeat_interval if r.repeat_interval is not None else (parent.repeat_interval if parent else None)
        receivers = tuple(r.all_receivers()) or (parent.receivers if parent else ())
        digest = r.digest or (parent.digest if parent else False)
        node = _Node(tuple(parse_matcher(m) for m in r.matchers), receivers, (), r.continue_, qh, ri, path, digest)
        children = tuple(self._compile(c, node, f"{path}.routes[{i}]") for i, c in enumerate(r.routes))
        return _Node(node.matchers, receivers, children, r.continue_, qh, ri, path, digest)

    def match(self, labels: dict[str, str]) -> list[RouteMatch]:
        """Every receiver the labels route to, each once, in route order."""
        found: list[RouteMatch] = []
        self._walk(self._root, labels, found)
        seen: set[str] = set()
        unique = []
        for m in found:
            if m.receiver not in seen:
                seen.add(m.receiver)
                unique.append(m)
        return unique

    def _walk(self, node: _Node, labels: dict[str, str], out: list[RouteMatch]) -> bool:
        if not all(m.matches(labels) for m in node.matchers):
            return False
        matched_child = False
        for child in node.children:
            if self._walk(child, labels, out):
                matched_child = True
                if not child.cont:
                    break
        if not matched_child:
            out.extend(
                RouteMatch(r, node.quiet_hours, node.repeat_interval, node.path, node.digest) for r in node.receivers
            )
        return True
