"""Database URLs: the async driver for a URL, its printable form, and the file of a SQLite one."""

from __future__ import annotations

from sqlalchemy.engine import make_url


def async_url(url: str) -> str:
    """sqlite:///x -> sqlite+aiosqlite:///x; postgresql://... -> postgresql+asyncpg://..."""
    u = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if u.drivername == "sqlite":
        u = u.set(drivername="sqlite+aiosqlite")
    elif u.drivername == "postgresql":
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


def redact_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL; None for PostgreSQL and for a database in memory."""
    u = make_url(async_url(url))
    if not u.drivername.startswith("sqlite") or not u.database or u.database == ":memory:":
        return None
    return u.database
