"""One wording for network failures, whoever meets them (CivitAI / Hugging Face clients,
downloads, WebUI package and git installs): a user offline reads "no network / cannot
resolve civitai.com", never a library's internals ("ssl:default [Name or service not
known]"). Imports nothing of sdpanel, so every layer may use it.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import ssl
from collections.abc import Iterable

__all__ = ["NETWORK_FIX", "cause_from_output", "network_cause", "no_network"]

NETWORK_FIX = "check the network connection (or the host name), then retry"


def no_network(host: str) -> str:
    """The cause shown when ``host`` cannot be resolved: offline, DNS down or a typo."""
    return f"no network / cannot resolve {host}"


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__, getattr(e, "os_error", None)]


def network_cause(host: str, exc: BaseException) -> str:
    """A short cause (no fix) for a connection-level failure talking to ``host``."""
    for e in _chain(exc):
        if isinstance(e, socket.gaierror) or type(e).__name__ == "ClientConnectorDNSError":
            return no_network(host)
        if isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED:
            return f"{host} refused the connection"
        if isinstance(e, (asyncio.TimeoutError, TimeoutError)) or type(e).__name__ == "ServerTimeoutError":
            return f"{host} did not answer in time"
        if isinstance(e, ssl.SSLError) or "Certificate" in type(e).__name__:
            return f"the secure connection to {host} failed (certificate or proxy)"
        if getattr(e, "errno", None) in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return f"no network / cannot reach {host}"
        if type(e).__name__ in ("ServerDisconnectedError", "ClientOSError", "ClientPayloadError"):
            return f"{host} closed the connection"
    return f"cannot connect to {host}"


# What git, pip and curl print when the network is the cause, and how we say it.
_OUTPUT_CAUSES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Could not resolve host:\s*([\w.-]+)"), "no network / cannot resolve {0}"),
    (re.compile(r"Failed to resolve '([\w.-]+)'"), "no network / cannot resolve {0}"),
    (re.compile(r"(?:unable to access|Failed to connect to) '?(?:https?://)?([\w.-]+).*Connection refused"),
     "{0} refused the connection"),
    (re.compile(r"(?:Temporary failure in name resolution|Name or service not known)"),
     "no network / cannot resolve the host"),
    (re.compile(r"No space left on device"), "the disk is full"),
)


def cause_from_output(lines: Iterable[str]) -> str | None:
    """The cause a failed command's output names (last match wins), in our wording."""
    found = None
    for line in lines:
        for pattern, wording in _OUTPUT_CAUSES:
            m = pattern.search(line)
            if m:
                found = wording.format(*m.groups())
                break  # the first (most specific) pattern of a line
    return found
