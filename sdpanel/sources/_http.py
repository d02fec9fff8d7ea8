"""Shared HTTP plumbing for the API clients: one aiohttp session per client and loop,
bounded back-off on 429/503 honouring ``Retry-After``, and errors turned into
user-facing exceptions (cause + fix, redacted)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict

from sdpanel._network import network_cause

from ._errors import ApiUnavailableError, RateLimitedError

Sleep = Callable[[float], Awaitable[None]]
_C = TypeVar("_C", bound="HttpBase")


def user_agent() -> str:
    # A non-browser UA on purpose: CivitAI sends browser UAs to an HTML login page.
    import sdpanel

    return f"sdpanel/{sdpanel.__version__} (+https://github.com/sdpanel)"


def retry_after_seconds(value: str | None, default: float) -> float:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import time

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return default


class HttpBase:
    """Session management and the retry loop. Subclasses set ``service`` (for messages)."""

    service = "API"

    def __init__(self, *, timeout: float = 30.0, max_retries: int = 3, max_retry_wait: float = 30.0,
                 sleep: Sleep | None = None, session: aiohttp.ClientSession | None = None) -> None:
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self._sleep: Sleep = sleep or asyncio.sleep
        self._session = session
        self._own_session = session is None

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": user_agent()},
            )
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._own_session and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self: _C) -> _C:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _unreachable(self, url: str, exc: BaseException) -> ApiUnavailableError:
        if isinstance(exc, asyncio.TimeoutError):
            return ApiUnavailableError(
                f"{self.service} did not answer within {self.timeout:.0f}s ({url}). "
                "It may be overloaded: retry in a minute.")
        host = urlsplit(url).hostname or url
        return ApiUnavailableError(
            f"{self.service} is unreachable: {network_cause(host, exc)}; check the network "
            "connection (or the configured base URL), then retry.")

    async def request(self, method: str, url: str, *, params: Any = None,
                      headers: dict[str, str] | None = None, allow_redirects: bool = True,
                      retry_statuses: tuple[int, ...] = (429, 503), max_body: int | None = None,
                      ) -> tuple[int, CIMultiDict[str], bytes, str]:
        """One request with bounded retries. Returns (status, headers, body, final url).
        ``max_body`` reads at most that many bytes (probing a URL that may be a file)."""
        sess = await self.session()
        attempt = 0
        while True:
            try:
                async with sess.request(method, url, params=params, headers=headers,
                                        allow_redirects=allow_redirects) as resp:
                    if method == "HEAD":
                        body = b""
                    elif max_body is not None:
                        body = await resp.content.read(max_body)
                    else:
                        body = await resp.read()
                    # Case-insensitive copy: servers spell ETag/Etag/etag as they like.
                    status, hdrs, final = resp.status, CIMultiDict(resp.headers), str(resp.url)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise self._unreachable(url, exc) from None
            if status not in retry_statuses:
                return status, hdrs, body, final
            if attempt >= self.max_retries:
                raise RateLimitedError(
                    f"{self.service} is rate limiting or overloaded (HTTP {status}) after "
                    f"{attempt + 1} tries. Wait a few minutes and retry"
                    + (", or set a token for a higher limit." if status == 429 else "."),
                    status=status)
            wait = min(self.max_retry_wait, retry_after_seconds(hdrs.get("Retry-After"), 2.0 ** attempt))
            attempt += 1
            await self._sleep(wait)


def json_body(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError):
        return None


def error_text(body: bytes) -> str:
    """The server's own error message, if its body says one."""
    data = json_body(body)
    if isinstance(data, dict):
        for key in ("message", "error", "detail"):
            if isinstance(data.get(key), str):
                return data[key]
    text = body[:200].decode("utf-8", "replace").strip()
    return "" if text.startswith("<") else text
