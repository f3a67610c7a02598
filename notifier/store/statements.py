"""Statements for hot paths: written once in SQLAlchemy Core, run on SQLite through the driver's own cursor.

SQLAlchemy's work per execution (compiled-cache lookup, parameter processing, result wrapping) costs more than
SQLite's own work for the small statements of the intake transaction, and it runs under the GIL that the HTTP
handlers need. On SQLite such a statement is compiled once per set of parameter names to plain SQL with `?`
placeholders and executed on the DBAPI cursor of the same connection, so it stays inside SQLAlchemy's transaction.
An expanding list (`IN :keys`) becomes `IN (SELECT value FROM json_each(?))`: one statement for every list length.
On PostgreSQL the statement runs through SQLAlchemy as it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

Params = Mapping[str, Any]


class _Compiled:
    __slots__ = ("_plain", "defaults", "expanding", "names", "sql")

    def __init__(self, stmt: Executable, conn: Connection, keys: list[str]) -> None:
        target: Any = stmt
        compiled: Any = target.compile(dialect=conn.dialect, column_keys=keys)
        sql: str = compiled.string
        self.expanding = {name for name, bind in compiled.binds.items() if bind.expanding}
        for name in self.expanding:
            sql = sql.replace(f"__[POSTCOMPILE_{name}]", "SELECT value FROM json_each(?)")
        self.sql = sql
        self.names: list[str] = list(compiled.positiontup or ())
        self.defaults: dict[str, Any] = dict(compiled.params)  # values SQLAlchemy bound itself (literals in CASE)
        # the common case, every parameter a plain value from the row: one C call per row
        self._plain = (
            itemgetter(*self.names)
            if len(self.names) > 1 and not self.expanding and set(self.names) <= set(keys)
            else None
        )

    def args(self, params: Params) -> tuple[Any, ...]:
        if self._plain is not None:
            plain: tuple[Any, ...] = self._plain(params)
            return plain
        out = []
        for name in self.names:
            value = params[name] if name in params else self.defaults[name]
            out.append(json.dumps(list(value)) if name in self.expanding else value)
        return tuple(out)


class Statement:
    """A Core statement with a fast path on SQLite (see the module's docstring)."""

    def __init__(self, stmt: Executable) -> None:
        self.stmt = stmt
        self._compiled: dict[tuple[str, ...], _Compiled] = {}

    def _for(self, conn: Connection, params: Params) -> _Compiled:
        key = tuple(params)
        c = self._compiled.get(key)
        if c is None:
            c = self._compiled[key] = _Compiled(self.stmt, conn, list(key))
        return c

    @contextmanager
    def _executed(self, conn: Connection, params: Params) -> Iterator[Any]:
        """SQLite: the driver's cursor after running the statement once with `params`."""
        c = self._for(conn, params)
        with _cursor(conn, c.sql) as cur:
            cur.execute(c.sql, c.args(params))
            yield cur

    def rows(self, conn: Connection, params: Params) -> list[tuple[Any, ...]]:
        """The result rows, as tuples in the order of the statement's columns."""
        if conn.dialect.name != "sqlite":
            return [tuple(r) for r in conn.execute(self.stmt, dict(params)).all()]
        with self._executed(conn, params) as cur:
            return list(cur.fetchall())

    def dicts(self, conn: Connection, params: Params) -> list[dict[str, Any]]:
        """The result rows as dicts keyed by column name."""
        if conn.dialect.name != "sqlite":
            return [dict(r) for r in conn.execute(self.stmt, dict(params)).mappings()]
        with self._executed(conn, params) as cur:
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def execute(self, conn: Connection, params: Params) -> None:
        if conn.dialect.name != "sqlite":
            conn.execute(self.stmt, dict(params))
            return
        with self._executed(conn, params):
            pass

    def execute_many(self, conn: Connection, rows: Sequence[Params]) -> None:
        """Once per row; the rows share their keys."""
        if not rows:
            return
        if conn.dialect.name != "sqlite":
            conn.execute(self.stmt, [dict(r) for r in rows])
            return
        c = self._for(conn, rows[0])
        with _cursor(conn, c.sql) as cur:
            cur.executemany(c.sql, [c.args(r) for r in rows])


@contextmanager
def _cursor(conn: Connection, sql: str) -> Iterator[Any]:
    """The driver's cursor on the transaction's connection; driver errors become SQLAlchemy's (IntegrityError,
    OperationalError, ...) as if SQLAlchemy had run the statement, parameters left out."""
    dbapi = conn.dialect.loaded_dbapi
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cur
    except dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, dbapi.Error, hide_parameters=True) from exc
    finally:
        cur.close()
