"""The console's operators: one token from the config, kept hashed; sessions, CSRF tokens, a login rate limit.

Why this shape: a control room shares one secret (``settings.console.token``,
best as a ``${cred:NAME}`` systemd credential), and each operator names
themself at login, so every action says who and when. The console keeps only
an scrypt hash of the token; a login compares hashes in constant time. A
session is a random id in a cookie (HttpOnly, SameSite=Strict: another site
cannot send it, scripts cannot read it) with its own CSRF token, which every
form carries back. Failed logins are limited per client address.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Cookie holding the session id.
SESSION_COOKIE = "camwatch_session"
#: Cookie holding the login form's CSRF token (before there is a session).
LOGIN_COOKIE = "camwatch_login"
#: Seconds a session lasts.
SESSION_S = 8 * 3600
#: Sessions kept at once (the oldest goes first).
MAX_SESSIONS = 256
#: Failed logins from one address within LOGIN_WINDOW_S before it must wait.
MAX_FAILURES = 5
LOGIN_WINDOW_S = 300.0
#: What an operator's name may be (it goes into events and logs).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,39}")


def _hash(token: str, salt: bytes) -> bytes:
    return hashlib.scrypt(token.encode(), salt=salt, n=1 << 14, r=8, p=1, dklen=32)


@dataclass(frozen=True)
class Session:
    who: str
    csrf: str
    expires: float


class Operators:
    """Checks logins against the token's hash and keeps sessions; ``clock`` is unix seconds."""

    def __init__(self, token: str, clock: Callable[[], float] = time.time) -> None:
        self._salt = secrets.token_bytes(16)
        self._hash = _hash(token, self._salt)     # the token itself is not kept
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def wait_s(self, client: str) -> float:
        """Seconds ``client`` must wait before trying to log in again (0: it may try now)."""
        now = self._clock()
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if now - t < LOGIN_WINDOW_S]
            self._failures[client] = recent
            if len(recent) < MAX_FAILURES:
                return 0.0
            return max(1.0, LOGIN_WINDOW_S - (now - recent[0]))

    def login(self, client: str, who: str, token: str) -> tuple[str, Session] | None:
        """A new session (its id, itself) when ``token`` is right; None, counted against ``client``, when not."""
        ok = hmac.compare_digest(_hash(token, self._salt), self._hash)
        now = self._clock()
        with self._lock:
            if not ok:
                self._failures.setdefault(client, []).append(now)
                if len(self._failures) > 4096:      # bounded: forget the address seen longest ago
                    self._failures.pop(next(iter(self._failures)))
                return None
            self._failures.pop(client, None)
            for sid in [s for s, v in self._sessions.items() if v.expires <= now]:
                del self._sessions[sid]
            while len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
            sid = secrets.token_urlsafe(32)
            session = Session(who, secrets.token_urlsafe(32), now + SESSION_S)
            self._sessions[sid] = session
            return sid, session

    def token_ok(self, client: str, token: str) -> bool:
        """Whether ``token`` (a script's, in the API's Authorization header) is right; a wrong one is
        counted against ``client`` as a failed login is (``wait_s``)."""
        ok = hmac.compare_digest(_hash(token, self._salt), self._hash)
        if not ok:
            with self._lock:
                self._failures.setdefault(client, []).append(self._clock())
                if len(self._failures) > 4096:
                    self._failures.pop(next(iter(self._failures)))
        return ok

    def session(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            s = self._sessions.get(sid)
            if s is None or s.expires <= self._clock():
                self._sessions.pop(sid, None)
                return None
            return s

    def logout(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)


def same(a: str | None, b: str | None) -> bool:
    """Whether two tokens are equal and not empty, in constant time."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


def new_token() -> str:
    return secrets.token_urlsafe(32)
