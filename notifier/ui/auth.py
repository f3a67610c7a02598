"""Logins of the web view: scrypt password hashes, sessions kept in the store, CSRF tokens, login throttling.

- A password is checked in a worker thread (scrypt takes tens of milliseconds of CPU, which the event loop must
  not spend), and a name that does not exist is checked against a hash of its own, so that both take the same
  time and names cannot be told from the answer's speed.
- A session is a random cookie; the store keeps its hash, its user, its CSRF token and its end
  (store/sessions.py): a logout ends it on every replica and after a restart, and a user removed from `ui.users`
  is logged out at the next request.
- Failed logins are counted per name and per address (`LoginThrottle`): past the limit, logins for that name, or
  from that address, are refused without looking at the password until the window has passed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
from collections import deque
from collections.abc import Collection

import msgspec

from notifier.store import Store
from notifier.store import sessions as stored

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
COOKIE = "notifier_session"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def check_password(password: str, stored_hash: str) -> bool:
    try:
        _scheme, n, r, p, salt, key = stored_hash.split("$")
        expected = _unb64(key)
        got = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected), maxmem=2**26
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


class LoginThrottle:
    """Failed logins in the last WINDOW seconds, per name and per address, kept by this process. NAME_LIMIT
    failures for one name (someone guessing its password), or ADDRESS_LIMIT from one address (someone trying many
    names), close logins for it until the oldest of those failures is WINDOW old."""

    WINDOW = 900.0
    NAME_LIMIT = 5
    ADDRESS_LIMIT = 20

    def __init__(self) -> None:
        self._names: dict[str, deque[float]] = {}
        self._addresses: dict[str, deque[float]] = {}

    def wait(self, name: str, address: str, now: float) -> float:
        """Seconds until a login for `name` from `address` is looked at again; 0 when it is now."""
        waits = [
            self._wait(self._names, name, self.NAME_LIMIT, now),
            self._wait(self._addresses, address, self.ADDRESS_LIMIT, now),
        ]
        return max(waits)

    def _wait(self, table: dict[str, deque[float]], key: str, limit: int, now: float) -> float:
        failures = table.get(key)
        if not failures:
            return 0.0
        while failures and failures[0] <= now - self.WINDOW:
            failures.popleft()
        if not failures:
            del table[key]
            return 0.0
        return failures[0] + self.WINDOW - now if len(failures) >= limit else 0.0

    def failed(self, name: str, address: str, now: float) -> None:
        self._names.setdefault(name, deque()).append(now)
        self._addresses.setdefault(address, deque()).append(now)

    def succeeded(self, name: str) -> None:
        self._names.pop(name, None)


class Session(msgspec.Struct, frozen=True):
    user: str
    csrf: str


class Sessions:
    """The web view's logins, kept in the store."""

    def __init__(self, store: Store, lifetime: float, users: Collection[str]) -> None:
        self._store = store
        self._lifetime = lifetime
        self._users = set(users)
        self._dummy = hash_password(secrets.token_urlsafe(16))  # what an unknown name's password is checked against
        self.throttle = LoginThrottle()

    async def check(self, password: str, password_hash: str | None) -> bool:
        """The password against the user's hash, or against a hash of no one's when there is no such user: the
        same work either way, in a worker thread."""
        ok = await asyncio.to_thread(check_password, password, password_hash or self._dummy)
        return ok and password_hash is not None

    async def issue(self, user: str, now: float) -> str:
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        expires = now + self._lifetime
        await self._store.run_in_transaction(lambda conn: stored.start(conn, cookie, user, csrf, now, expires))
        return cookie

    async def session(self, cookie: str | None, now: float) -> Session | None:
        """The session of a cookie: known to the store, not ended, not expired, of a user who still exists."""
        if not cookie or len(cookie) > 100 or not cookie.isascii():
            return None
        async with self._store.begin(readonly=True) as conn:
            found = await conn.run_sync(lambda c: stored.find(c, cookie, now))
        if found is None or found.user not in self._users:
            return None
        return Session(found.user, found.csrf)

    async def end(self, cookie: str) -> None:
        await self._store.run_in_transaction(lambda conn: stored.end(conn, cookie))

    @staticmethod
    def csrf_ok(session: Session | None, token: str | None) -> bool:
        return session is not None and bool(token) and hmac.compare_digest(session.csrf, str(token))
