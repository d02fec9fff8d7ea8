"""What the queue needs from a WebUI backend, and the error wording they share."""

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
