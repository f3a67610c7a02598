"""Statements that the intake runs for every batch, with a row per webhook: compiled once, and on SQLite run through
the driver's cursor.

On SQLite the group commit's statements run on the event loop (store/sqlite.py), so what a statement costs in
Python is time no request is served. SQLAlchemy prepares every row of an executemany in Python (its parameters are
looked up by name, then converted); the driver takes rows as tuples and binds them in C. A `BulkWrite` compiles
its statement once per set of columns and hands the driver the rows as tuples in the compiled order; a `BulkRead`
renders the placeholders of its IN lists for the lengths it is given. They take only the column types the driver
binds as they are (text, numbers, bytes, booleans): a statement with another type is refused when its SQL is
compiled (a `BulkRead` when it is made, a `BulkWrite` at its first rows). A
driver error is raised as SQLAlchemy's error for it, so that the group commit tells a refused row from a failed
database as it does for any other statement. On PostgreSQL both run through SQLAlchemy, as any statement does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import Boolean, Float, Integer, LargeBinary, String
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

_DIALECT = sqlite.dialect()
_Values = Callable[[Mapping[str, Any]], tuple[Any, ...]]  # a row's values in the order the SQL binds them
_AS_IS = (String, Integer, Float, LargeBinary, Boolean)  # types sqlite3 binds without SQLAlchemy's conversion


class BulkWrite:
    """An INSERT or upsert run for many rows at once (`run`). Every row of one call has the same columns."""

    def __init__(self, statement: Executable, dialect: str) -> None:
        self._statement = statement
        self._sqlite = dialect == "sqlite"
        self._plans: dict[tuple[str, ...], tuple[str, _Values]] = {}  # the rows' columns -> SQL, values

    def run(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        if not self._sqlite:
            conn.execute(self._statement, list(rows))
            return
        columns = tuple(rows[0])
        plan = self._plans.get(columns)
        if plan is None:
            plan = self._plans[columns] = self._plan(columns)
        sql, values = plan
        with _as_sqlalchemy_error(sql):
            _driver(conn).executemany(sql, map(values, rows))

    def _plan(self, columns: tuple[str, ...]) -> tuple[str, _Values]:
        compiled = _compile(self._statement, column_keys=list(columns))
        names = _positions(compiled)
        missing = [n for n in names if n not in columns]
        if missing:  # a column default SQLAlchemy would compute: not for the driver alone
            raise ValueError(f"BulkWrite rows lack {missing}")
        if len(names) == 1:
            return str(compiled), lambda row: (row[names[0]],)
        values: _Values = itemgetter(*names)
        return str(compiled), values


class BulkRead:
    """A SELECT whose IN lists are given as lists (`rows`). On SQLite its SQL is rendered once per combination of
    list lengths; a batch has a few. Its other parameters are constants of the statement."""

    def __init__(self, statement: Executable, dialect: str, lists: Sequence[str]) -> None:
        """`lists`: the names of its expanding parameters."""
        self.statement = statement
        self._sqlite = dialect == "sqlite"
        self._lists = frozenset(lists)
        self._plans: dict[tuple[int, ...], str] = {}
        self._sql = ""  # SQLite's SQL, its IN lists still to be rendered
        self._order: list[str] = []  # the parameters in the order the SQL binds them
        self._constants: dict[str, list[Any]] = {}  # name -> its values, for the statement's own parameters
        if self._sqlite:
            compiled = _compile(self.statement)
            self._sql = str(compiled)
            self._order = _positions(compiled)
            for name in self._order:
                if name in self._lists:
                    continue
                bind = compiled.binds[name]
                if bind.value is None:
                    raise ValueError(f"BulkRead parameter {name} is neither an IN list nor a constant")
                self._constants[name] = list(bind.value) if bind.expanding else [bind.value]
            if self._lists - set(self._order):
                raise ValueError(f"BulkRead's SQL binds no {sorted(self._lists - set(self._order))}")

    def rows(self, conn: Connection, params: Mapping[str, list[Any]]) -> Sequence[Sequence[Any]]:
        """The rows, as tuples in the order of the SELECT's columns. The IN lists are ANDed: an empty one selects
        nothing."""
        if not self._sqlite:
            return conn.execute(self.statement, dict(params)).all()
        values = [params[name] if name in self._lists else self._constants[name] for name in self._order]
        lengths = tuple(len(v) for v in values)
        if 0 in lengths:
            return []
        sql = self._plans.get(lengths)
        if sql is None:
            sql = self._plans[lengths] = self._render(lengths)
        with _as_sqlalchemy_error(sql):
            rows: list[tuple[Any, ...]] = _driver(conn).execute(sql, [v for vs in values for v in vs]).fetchall()
        return rows

    def _render(self, lengths: tuple[int, ...]) -> str:
        # SQLAlchemy marks an expanding parameter as "(__[POSTCOMPILE_name])"; each becomes its list's placeholders
        sql = self._sql
        for name, n in zip(self._order, lengths, strict=True):
            sql = sql.replace(f"(__[POSTCOMPILE_{name}])", "(" + ", ".join("?" * n) + ")")
        return sql


def _compile(statement: Executable, **kw: Any) -> SQLCompiler:
    compiled = cast(ClauseElement, statement).compile(dialect=_DIALECT, **kw)
    assert isinstance(compiled, SQLCompiler)
    return compiled


def _positions(compiled: SQLCompiler) -> list[str]:
    """The compiled statement's parameters in the order the driver binds them, each checked for its type."""
    names = list(compiled.positiontup or [])
    for name in names:
        kind = compiled.binds[name].type
        if not isinstance(kind, _AS_IS):
            raise ValueError(f"parameter {name} has type {kind!r}, which the driver does not take as it is")
    return names


def _driver(conn: Connection) -> sqlite3.Connection:
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    return raw


@contextmanager
def _as_sqlalchemy_error(sql: str) -> Iterator[None]:
    """A driver error as the SQLAlchemy error it would have been (IntegrityError, OperationalError, ...)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc
