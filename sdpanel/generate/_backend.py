"""What the queue needs from a WebUI backend, the error wording they share, and
:class:`HTTPBackend`, the session / ping / close plumbing both WebUI backends use."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import aiohttp

from sdpanel.settings import redact

from ._jobs import BackendError, Job


class Reporter(Protocol):
    """How a backend tells the queue about a running job (called on the runtime loop)."""

    def progress(self, step: int, steps: int) -> None: ...

    def preview(self, image: bytes, mime: str) -> None: ...


class Backend(Protocol):
    name: str
    flavour: str
    url: str

    async def run(self, job: Job, report: Reporter) -> list[bytes]:
        """Generate; return one PNG per image. Raise BackendError / JobCancelled."""
        ...

    async def interrupt(self) -> None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def connection_error(flavour: str, url: str, exc: BaseException) -> BackendError:
    """The message a user sees when the WebUI went away: what, where and what to do."""
    label = "ComfyUI" if flavour == "comfyui" else "A1111/Forge"
    detail = redact(str(exc) or type(exc).__name__)
    err = BackendError(f"{label} at {url} stopped answering mid-job ({detail}). It has probably "
                       "crashed or been stopped: check its log, relaunch it, then re-run the job.")
    err.connection_lost = True  # type: ignore[attr-defined]
    return err


CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError,
    asyncio.IncompleteReadError)


async def guarded(flavour: str, url: str, work: Callable[[], Awaitable[list[bytes]]]) -> list[bytes]:
    """Run ``work`` turning transport failures into one clear :class:`BackendError`."""
    try:
        return await work()
    except CONNECTION_ERRORS as exc:
        raise connection_error(flavour, url, exc) from None
    except aiohttp.ClientResponseError as exc:
        raise BackendError(f"{flavour} at {url} answered HTTP {exc.status}: "
                           f"{redact(exc.message)}") from None


class HTTPBackend:
    """A WebUI reached over HTTP: one lazily made session, a health check, and ``run``
    wrapped by :func:`guarded`. Subclasses set ``flavour`` and ``ping_path`` and write
    ``_run``."""

    flavour = ""
    ping_path = ""  # a cheap GET answering 200 while the WebUI is up

    def __init__(self, url: str, name: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.name = name or f"{self.flavour}@{self.url.split('://', 1)[-1]}"
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Per-request timeouts only: a job legitimately runs (and a WebSocket stays
            # open) for minutes.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def ping(self) -> bool:
        try:
            s = await self.session()
            async with s.get(f"{self.url}{self.ping_path}", timeout=aiohttp.ClientTimeout(total=5)) as r:
                return r.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False

    async def run(self, job: Job, report: Reporter) -> list[bytes]:
        return await guarded(self.flavour, self.url, lambda: self._run(job, report))

    async def _run(self, job: Job, report: Reporter) -> list[bytes]:
        raise NotImplementedError
