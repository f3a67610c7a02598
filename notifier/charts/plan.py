"""What a chart draws for an alert: the expression of its rule, read from Alertmanager's `generatorURL` (`g0.expr`),
and where that expression compares a series with a number (`drawdown > 0.2`), the series alone with the number as
its threshold. The expression is read with a real PromQL parser; any other form is drawn as it is."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import promql_parser

_FLIPPED = {">": "<", "<": ">", ">=": "<=", "<=": ">=", "==": "==", "!=": "!="}


@dataclass(frozen=True, slots=True)
class Plan:
    """What to ask Prometheus for, and the line to draw across it."""

    query: str
    threshold: float | None = None
    op: str | None = None  # how the series compares with the threshold when the alert fires: "series > threshold"


def expression_of(generator_url: str) -> str | None:
    """The rule's expression from a Prometheus graph link (`.../graph?g0.expr=...`), if it has one."""
    values = parse_qs(urlsplit(generator_url).query).get("g0.expr")
    expr = values[0].strip() if values else ""
    return expr or None


def plan(expr: str) -> Plan:
    """The series and threshold of `expr`. A comparison of an expression with a number (either side, not `bool`)
    is split; anything else (a comparison of two series, `absent(...)`, a form the parser refuses) is drawn as it
    is, without a threshold."""
    try:
        tree = promql_parser.parse(expr)
    except ValueError:
        return Plan(expr)
    if not isinstance(tree, promql_parser.BinaryExpr):
        return Plan(expr)
    op = str(tree.op)
    if op not in _FLIPPED or (tree.modifier is not None and tree.modifier.return_bool):
        return Plan(expr)
    if isinstance(tree.rhs, promql_parser.NumberLiteral) and not isinstance(tree.lhs, promql_parser.NumberLiteral):
        return Plan(str(tree.lhs), float(tree.rhs.val), op)
    if isinstance(tree.lhs, promql_parser.NumberLiteral) and not isinstance(tree.rhs, promql_parser.NumberLiteral):
        return Plan(str(tree.rhs), float(tree.lhs.val), _FLIPPED[op])
    return Plan(expr)
