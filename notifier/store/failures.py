"""How a database failure is told: one line, without SQL, parameters or credentials."""

from __future__ import annotations


def is_connection_problem(exc: BaseException) -> bool:
    s = f"{type(exc).__name__} {exc}".lower()
    return any(w in s for w in ("connect", "closed", "timeout", "disk", "locked", "readonly", "full"))


def describe_db_error(exc: BaseException) -> str:
    """A one-line reason without SQL, parameters or credentials."""
    orig = getattr(exc, "orig", None) or exc
    name = type(orig).__name__
    msg = str(orig).splitlines()[0] if str(orig) else ""
    if "[SQL:" in msg:
        msg = msg.split("[SQL:")[0].strip()
    return f"{name}: {msg}"[:300] if msg else name
