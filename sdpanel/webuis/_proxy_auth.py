"""Who may pass the login proxy: basic-auth checks, login sessions, failed-login throttling.

Kept apart from the HTTP plumbing in ``_proxy`` so each rule is small and testable with an
injected clock. The rules:

- credentials are compared as UTF-8 bytes (any header a browser can send gives 401, never
  a 500 with a traceback);
- each successful basic-auth login mints a new session token (never a fixed cookie), valid
  for ``SESSION_TTL_S``; at most ``MAX_SESSIONS`` live at once, oldest dropped first;
- wrong passwords are throttled per client (the address the tunnel reports, else the
  socket's) and in total, in tables of bounded size: past ``FREE_FAILURES`` a client waits
  twice as long after each further failure, up to ``MAX_LOCK_S``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Credentials", "LoginThrottle", "Sessions", "client_key"]

SESSION_TTL_S = 12 * 3600
MAX_SESSIONS = 64
FREE_FAILURES = 5
MAX_LOCK_S = 300.0
MAX_CLIENTS = 4096
# All clients together: a guesser rotating forged X-Forwarded-For values still gets no more.
GLOBAL_FAILURES_PER_MIN = 60

Clock = Callable[[], float]


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str

    def check_header(self, header: str) -> bool | None:
        """True/False for a basic-auth header; None when there is none (not a failed login)."""
        if header[:6].lower() != "basic ":
            return None
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, pw = raw.decode("utf-8", errors="surrogateescape").partition(":")
        return bool(sep) and _eq(user, self.user) & _eq(pw, self.password)


class Sessions:
    """Login cookies: random tokens with an expiry, rotated on each login."""

    def __init__(self, ttl_s: float = SESSION_TTL_S, limit: int = MAX_SESSIONS,
                 clock: Clock = time.monotonic) -> None:
        self.ttl_s, self.limit, self._clock = ttl_s, limit, clock
        self._live: OrderedDict[str, float] = OrderedDict()

    def new(self) -> str:
        token = secrets.token_urlsafe(32)
        self._live[token] = self._clock() + self.ttl_s
        while len(self._live) > self.limit:
            self._live.popitem(last=False)
        return token

    def valid(self, token: str) -> bool:
        if not token:
            return False
        now = self._clock()
        for known, expires in list(self._live.items()):
            if expires <= now:
                del self._live[known]
            elif _eq(token, known):
                return True
        return False


def client_key(headers: Mapping[str, str], remote: str | None) -> str:
    """The client's address as the tunnel reports it (cloudflared: CF-Connecting-IP; others:
    the first X-Forwarded-For hop), else the socket peer. Forgeable, hence the global cap."""
    for name in ("CF-Connecting-IP", "X-Real-IP"):
        value = headers.get(name, "")
        if value:
            return str(value).strip()[:64]
    forwarded = headers.get("X-Forwarded-For", "")
    if forwarded:
        return str(forwarded).split(",")[0].strip()[:64]
    return remote or "?"


class LoginThrottle:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._clients: OrderedDict[str, tuple[int, float]] = OrderedDict()  # failures, locked until
        self._recent: list[float] = []

    def wait_s(self, client: str) -> float:
        """Seconds before ``client`` may try a password again (0: now)."""
        now = self._clock()
        self._recent = [t for t in self._recent if now - t < 60]
        if len(self._recent) >= GLOBAL_FAILURES_PER_MIN:
            return max(1.0, 60 - (now - self._recent[0]))
        _failures, until = self._clients.get(client, (0, 0.0))
        return max(0.0, until - now)

    def failed(self, client: str) -> None:
        now = self._clock()
        self._recent.append(now)
        failures, _until = self._clients.pop(client, (0, 0.0))
        failures += 1
        lock = 0.0 if failures <= FREE_FAILURES else min(MAX_LOCK_S, 2.0 ** (failures - FREE_FAILURES))
        self._clients[client] = (failures, now + lock)
        while len(self._clients) > MAX_CLIENTS:
            self._clients.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)
