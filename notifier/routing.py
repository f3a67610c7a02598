"""Routing: label matchers -> route tree -> receivers, as Alertmanager routes (pure, no I/O).

A route matches when all its matchers match. Its children are tried in order; the first that matches wins unless it
says `continue: true`, in which case later siblings are tried too. When no child matches, the route's own receivers
take the alert. Children inherit quiet hours and repeat_interval from their parent unless they set their own;
escalation steps belong to the route that lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

from notifier.matchers import Matcher, parse_matcher
from notifier.settings import Duration, EscalationStep, RouteQuietHours, RouteSettings


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """A receiver chosen for an alert group, with the route's quiet hours and repeat interval."""

    receiver: str
    quiet_hours: RouteQuietHours | None
    repeat_interval: Duration | None
    route_path: str
    digest: bool = False
    # the route's escalation steps and its receivers (the ones whose first message starts the chain)
    escalation: tuple[EscalationStep, ...] = ()
    route_receivers: tuple[str, ...] = ()


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
    escalation: tuple[EscalationStep, ...] = ()


class Router:
    """The compiled route tree of one config."""

    def __init__(self, root: RouteSettings) -> None:
        self._root = self._compile(root, None, "routes")

    def _compile(self, r: RouteSettings, parent: _Node | None, path: str) -> _Node:
        qh = r.quiet_hours if r.quiet_hours is not None else (parent.quiet_hours if parent else None)
        ri = r.repeat_interval if r.repeat_interval is not None else (parent.repeat_interval if parent else None)
        receivers = tuple(r.all_receivers()) or (parent.receivers if parent else ())
        digest = r.digest or (parent.digest if parent else False)
        steps = tuple(r.escalation)
        node = _Node(tuple(parse_matcher(m) for m in r.matchers), receivers, (), r.continue_, qh, ri, path, digest)
        children = tuple(self._compile(c, node, f"{path}.routes[{i}]") for i, c in enumerate(r.routes))
        return _Node(node.matchers, receivers, children, r.continue_, qh, ri, path, digest, steps)

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
                RouteMatch(
                    r,
                    node.quiet_hours,
                    node.repeat_interval,
                    node.path,
                    node.digest,
                    node.escalation,
                    node.receivers if node.escalation else (),
                )
                for r in node.receivers
            )
        return True
