"""The Python engine's HTTP side of one transfer: requests that follow redirects by hand (so
headers never travel to another host), the probe that learns size and validators, the
single-flight refresh of an expired signed link, and the one retry loop every request path
(probe, ranged connection, single stream) goes through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urljoin, urlsplit

import aiohttp

from ._engine import ProgressFn, SaveStateFn, Transfer
from ._errors import DownloadError, http_error, scheme_refused, unreachable_error
from ._spec import origin

if TYPE_CHECKING:
    from ._python_engine import PythonEngine

__all__ = ["NET_ERRORS", "Changed", "Expired", "HttpJob", "Retry", "total_from", "validator_of"]

NET_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)
_REDIRECTS = {301, 302, 303, 307, 308}

T = TypeVar("T")


class Changed(Exception):
    """The file changed upstream (validator or size differs): restart from scratch."""


class Expired(Exception):
    """Storage refused a URL that worked before (403/400): resolve it again."""


class Retry(Exception):
    def __init__(self, err: DownloadError) -> None:
        super().__init__(err.message)
        self.err = err


def validator_of(headers: Any) -> str | None:
    """The strong ETag, else Last-Modified: what If-Range carries."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return str(etag)
    lm = headers.get("Last-Modified")
    return str(lm) if lm else None


def total_from(resp: aiohttp.ClientResponse) -> int | None:
    cr = resp.headers.get("Content-Range")
    if cr:
        total = cr.rpartition("/")[2].strip()
        return int(total) if total.isdigit() else None
    if resp.status == 200 and resp.content_length is not None:
        return resp.content_length
    return None


class HttpJob:
    """What one ``fetch`` knows about its source; the engine's ``_Job`` adds the transfer."""

    def __init__(self, eng: PythonEngine, t: Transfer, progress: ProgressFn,
                 save_state: SaveStateFn) -> None:
        self.eng, self.t, self.progress, self.save_state = eng, t, progress, save_state
        self.url, self.headers = t.url, dict(t.headers)
        self.redirected = False
        self.url_gen = 0
        self.refresh_lock = asyncio.Lock()
        self.refreshes = 0
        self.validator: str | None = None
        self.latency = 0.05
        self.stats: dict[str, Any] = {"splits": 0, "restarts": 0, "refreshes": 0,
                                      "retries": 0, "requests": 0, "mode": None,
                                      "resumed_bytes": 0, "bytes_by_worker": {}}

    async def retrying(self, attempt: Callable[[], Awaitable[T]],
                       progressed: Callable[[], int] | None = None) -> T:
        """``attempt()`` until it succeeds: an expired link is resolved again (not a try),
        other transient failures back off; ``max_tries`` failures in a row without
        ``progressed()`` growing raise the last one's DownloadError."""
        tries = 0
        while True:
            gen = self.url_gen
            mark = progressed() if progressed is not None else 0
            try:
                return await attempt()
            except Expired:
                await self.refresh(gen)
                continue
            except Retry as exc:
                err = exc.err
            except aiohttp.ClientPayloadError as exc:
                err = DownloadError("truncated", f"The connection to {urlsplit(self.url).hostname}"
                                    f" kept breaking mid-transfer ({exc}): resume later.")
            except NET_ERRORS as exc:
                err = unreachable_error(self.url, exc)
            tries = 1 if progressed is not None and progressed() > mark else tries + 1
            self.stats["retries"] += 1
            if tries >= self.eng.max_tries:
                raise err
            await asyncio.sleep(self.eng.delay(tries, err))

    async def probe(self, if_range: str | None) -> aiohttp.ClientResponse:
        """``Range: bytes=0-0`` to learn size, validators and range support; follows
        redirects itself so headers never travel to another host."""

        async def attempt() -> aiohttp.ClientResponse:
            resp = await self.request("bytes=0-0", if_range, follow=True)
            if resp.status in (200, 206):
                return resp
            if resp.status == 416 and resp.headers.get("Content-Range") == "bytes */0":
                return resp  # an empty file
            raise await self.status_error(resp)

        return await self.retrying(attempt)

    async def request(self, rng: str | None, if_range: str | None, follow: bool = False
                      ) -> aiohttp.ClientResponse:
        session = await self.eng.session()
        headers = dict(self.headers)
        if rng:
            headers["Range"] = rng
        if if_range:
            headers["If-Range"] = if_range
        for _ in range(10):
            self.stats["requests"] += 1
            resp = await session.get(self.url, headers=headers, allow_redirects=False)
            if not (follow and resp.status in _REDIRECTS and "Location" in resp.headers):
                return resp
            target = urljoin(self.url, resp.headers["Location"])
            resp.release()
            refused = scheme_refused(self.url, target)
            if refused is not None:
                raise refused
            if origin(target) != origin(self.url):
                # Headers (tokens) belong to their own origin only (scheme, host, port).
                headers = {k: v for k, v in headers.items() if k in ("Range", "If-Range")}
                self.headers = {}
            self.url, self.redirected = target, True
        raise DownloadError("server_error", "Too many redirects from "
                            f"{urlsplit(self.url).hostname}: check the link.", retryable=False)

    async def status_error(self, resp: aiohttp.ClientResponse) -> Exception:
        """The exception for a non-success answer: Expired when storage refuses a URL that
        can be resolved again, Retry for retryable statuses, else the DownloadError."""
        body = await resp.content.read(4096)
        resp.close()
        sent_auth = any(k.lower() == "authorization" for k in self.headers)
        # A 400 to a request with a header is storage refusing a second auth mechanism:
        # resolving again would send the same header, so it is not an expired link.
        refusal = resp.status == 403 or (resp.status == 400 and not sent_auth)
        if refusal and (self.t.refresh_url or self.redirected) \
                and self.refreshes < 5:  # in a row without progress: a real refusal
            return Expired()
        err = http_error(resp.status, self.url, body, dict(resp.headers), carried_auth=sent_auth)
        return Retry(err) if err.retryable else err

    async def refresh(self, gen: int) -> None:
        """Resolve the source again (single flight: concurrent callers share one refresh)."""
        async with self.refresh_lock:
            if gen != self.url_gen:
                return
            self.refreshes += 1
            self.stats["refreshes"] += 1
            self.eng.log("info", "storage refused the signed link (expired?); resolving again")
            if self.t.refresh_url is not None:
                self.url, self.headers = await self.t.refresh_url()
            else:
                self.url, self.headers = self.t.url, dict(self.t.headers)
            self.url_gen += 1
