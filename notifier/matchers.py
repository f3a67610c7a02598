"""Label matchers as Alertmanager writes them: name="value", name!="value", name=~"regex", name!~"regex" (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

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
class GroupKey:
    """An Alertmanager group key, read: the matchers of the route that made the group (from the root down), and
    the group's labels (its group_by). `{}/{team="db"}:{alertname="HighCPU"}` is the route `team="db"` under the
    root and the group of alertname HighCPU."""

    route: tuple[Matcher, ...]
    labels: dict[str, str]


_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"'}


def _go_string(text: str, pos: int) -> tuple[str, int]:
    """A Go-quoted string (what `%q` writes) starting at text[pos] == '"': its value and the position after it."""
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = text[i + 1 : i + 2]
        if e in _GO_ESCAPES:
            out.append(_GO_ESCAPES[e])
            i += 2
        elif e in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = text[i + 2 : i + 2 + width]
            if len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError(f"bad escape at {i}")
            out.append(chr(int(digits, 16)) if e != "x" else bytes([int(digits, 16)]).decode("latin-1"))
            i += 2 + width
        else:
            raise ValueError(f"bad escape at {i}")
    raise ValueError("unterminated string")


def _block(text: str, pos: int, separator: str) -> tuple[list[tuple[str, str, str]], int]:
    """`{name<op>"value"<separator>...}` at text[pos]: its (name, op, value) triples and the position after it."""
    if text[pos : pos + 1] != "{":
        raise ValueError(f"expected '{{' at {pos}")
    i = pos + 1
    items: list[tuple[str, str, str]] = []
    while True:
        if text[i : i + 1] == "}":
            return items, i + 1
        if items:
            if not text.startswith(separator, i):
                raise ValueError(f"expected {separator!r} at {i}")
            i += len(separator)
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(text, i)
        if m is None:
            raise ValueError(f"expected a label name at {i}")
        name, i = m.group(), m.end()
        op = next((o for o in ("=~", "!~", "!=", "=") if text.startswith(o, i)), None)
        if op is None or text[i + len(op) : i + len(op) + 1] != '"':
            raise ValueError(f"expected an operator and a quoted value at {i}")
        value, i = _go_string(text, i + len(op))
        items.append((name, op, value))


def parse_group_key(key: str) -> GroupKey:
    """Read an Alertmanager group key (route matchers, then group labels). ValueError when it is not one."""
    route: list[Matcher] = []
    i = 0
    while True:
        items, i = _block(key, i, ",")
        for name, op, value in items:
            kind = MatchOp(op)
            pattern = re.compile(value) if kind in (MatchOp.RE, MatchOp.NRE) else None
            route.append(Matcher(name, kind, value, pattern))
        if key[i : i + 1] == "/":
            i += 1
            continue
        if key[i : i + 1] == ":":
            break
        raise ValueError(f"expected '/' or ':' at {i}")
    items, i = _block(key, i + 1, ", ")
    if i != len(key) or any(op != "=" for _n, op, _v in items):
        raise ValueError('the group labels must be name="value" pairs, and nothing after them')
    return GroupKey(tuple(route), {name: value for name, _op, value in items})
