"""Logins of the web view: scrypt password hashes, signed session cookies, CSRF tokens.

A session is a cookie `user|expires|nonce|signature` (HMAC-SHA256 with the session secret): nothing is stored per
session, so replicas that share `ui.session_secret` accept each other's logins; a logout is remembered by this
process until the session would have expired anyway. A form's CSRF token is an HMAC of its session, so a page
of another site cannot make one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

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


def check_password(password: str, stored: str) -> bool:
    try:
        _scheme, n, r, p, salt, key = stored.split("$")
        expected = _unb64(key)
        got = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected), maxmem=2**26
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


class Sessions:
    def __init__(self, secret: str | None, lifetime: float) -> None:
        self._key = (secret or secrets.token_urlsafe(32)).encode()
        self._lifetime = lifetime
        self._ended: dict[str, float] = {}  # nonce -> expiry, of sessions logged out

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())

    def issue(self, user: str, now: float) -> str:
        body = f"{user}|{int(now + self._lifetime)}|{secrets.token_urlsafe(12)}"
        return f"{body}|{self._sign(body)}"

    def user(self, cookie: str | None, now: float) -> str | None:
        """The user of a valid, unexpired session cookie, else None."""
        if not cookie or cookie.count("|") != 3:
            return None
        body, _, signature = cookie.rpartition("|")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        user, expires, nonce = body.split("|")
        if not expires.isdigit() or int(expires) < now or nonce in self._ended:
            return None
        return user

    def end(self, cookie: str, now: float) -> None:
        if self.user(cookie, now) is not None:
            _user, expires, nonce, _sig = cookie.split("|")
            self._ended = {n: t for n, t in self._ended.items() if t >= now}
            self._ended[nonce] = float(expires)

    def csrf(self, cookie: str) -> str:
        return self._sign(f"csrf|{cookie}")

    def csrf_ok(self, cookie: str | None, token: str | None) -> bool:
        return bool(cookie and token) and hmac.compare_digest(self.csrf(str(cookie)), str(token))
