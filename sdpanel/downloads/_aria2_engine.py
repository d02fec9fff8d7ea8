"""The aria2c engine: one aria2 download (GID) per transfer in the managed daemon.

State changes arrive as WebSocket notifications; progress is polled with ``tellStatus``
at most twice a second. The file is hashed while aria2 writes it (``_aria2_hash``), so the
transfer's end is the verification's end. The GID lives in ``Transfer.state`` so a new kernel re-attaches to
a download the daemon kept running; when the daemon no longer knows it (it was restarted
or killed), the same ``out`` is added again and aria2 resumes from its ``.aria2`` control
file beside the part file.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from sdpanel._network import no_network

from ._aria2 import Aria2Client, Aria2Daemon, Aria2RpcError, Aria2Unavailable
from ._aria2_hash import PieceHasher
from ._engine import ProgressFn, SaveStateFn, Transfer, TransferResult
from ._errors import DownloadError, http_error, scheme_refused, unreachable_error
from ._spec import origin

__all__ = ["Aria2Engine", "aria2_error", "split_size"]

_KEYS = ["gid", "status", "totalLength", "completedLength", "downloadSpeed", "errorCode",
         "errorMessage", "connections", "files"]
_STATUS_RE = re.compile(r"status=(\d{3})")
_MAX_REFRESHES = 3
_MAX_DAEMON_RESTARTS = 3


def split_size(size: int | None, connections: int) -> str:
    """aria2's ``min-split-size`` for a file: about 8 requests per connection. Fetching
    pieces lowest-first makes every jump a new request (often a new TLS connection on a
    real CDN); 1 MiB pieces would mean ~2000 of them for a 2 GiB file."""
    if not size:
        return "1M"
    mib = size // max(1, connections * 8) >> 20
    return f"{min(64, max(1, mib))}M"


def aria2_error(code: str | int, message: str, url: str) -> DownloadError:
    """Map aria2's ``errorCode`` (see the aria2 reference table) to a :class:`DownloadError`."""
    code = int(code or 1)
    host = urlsplit(url).hostname or "the server"
    if code == 22 or code == 3:
        m = _STATUS_RE.search(message or "")
        status = int(m.group(1)) if m else (404 if code == 3 else 500)
        return http_error(status, url, None, {}, "url")
    if code == 24:
        return http_error(401, url, None, {}, "url")
    if code in (2, 5, 6, 19):
        if code == 19:  # aria2: name resolution failed
            return unreachable_error(url, cause=no_network(host))
        return unreachable_error(url, None) if code != 5 else DownloadError(
            "unreachable", f"{host} sent data too slowly: check the connection; it will be retried.")
    if code == 9:
        return DownloadError("disk_full", "The disk holding the download is full: free some "
                             "space (delete unused models or outputs) and resume the download.")
    if code == 8:
        return DownloadError("changed_upstream", f"{host} cannot resume this file (no range "
                             "support or it changed): the download restarts from the beginning.",
                             retryable=True, resumable=False)
    if code == 32:
        return DownloadError("checksum", "aria2 found a checksum mismatch: the file is removed; "
                             "retry, and if it repeats the source file differs from the listing.")
    if code == 13:
        return DownloadError("server_error", "A stale partial file is in the way: it is removed "
                             "and the download restarts.", retryable=True, resumable=False)
    low = (message or "").lower()
    if code == 1 and any(w in low for w in ("establish connection", "connection refused", "timed out",
                                              "network is unreachable", "name resolution",
                                              "connection reset", "eof")):
        return unreachable_error(url, cause=no_network(host) if "name resolution" in low else None)
    if code == 1 and message and "status" in message.lower():
        m = _STATUS_RE.search(message)
        if m:
            return http_error(int(m.group(1)), url, None, {}, "url")
    return DownloadError("server_error", f"aria2 failed to download from {host} (error "
                         f"{code}: {message or 'unknown'}); it will be retried.", retryable=True)


async def _probe_error(t: Transfer) -> DownloadError | None:
    """The error the byte URL answers now (one-byte ranged GETs, redirects followed by hand
    so headers stay on their host), if any: an HTTP error, or a redirect out of http(s)
    that aria2 only reports as a failed connection."""
    url, headers = t.url, dict(t.headers)
    try:
        async with aiohttp.ClientSession() as session:
            for _hop in range(10):
                async with session.get(url, headers={**headers, "Range": "bytes=0-0"},
                                       allow_redirects=False,
                                       timeout=aiohttp.ClientTimeout(total=15)) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        target = urljoin(url, resp.headers["Location"])
                        refused = scheme_refused(url, target)
                        if refused is not None:
                            return refused
                        if origin(target) != origin(url):
                            headers = {}
                        url = target
                        continue
                    if resp.status < 400:
                        return None
                    body = await resp.content.read(4096)
                    return http_error(resp.status, url, body, dict(resp.headers), "url",
                                      carried_auth=any(k.lower() == "authorization" for k in headers))
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        return unreachable_error(t.url, exc)
    return None


class _RefreshBudget:
    """How often an expired or refused signed URL is resolved again: as long as the download
    gains bytes between two refusals (a long file outlives a 1 h Xet URL; the bridge 403s
    extra connections part-way), but at most ``_MAX_REFRESHES`` times in a row without a
    byte gained (then the refusal is real)."""

    def __init__(self) -> None:
        self.in_a_row = 0
        self.done_at_last = -1

    def allows(self, done: int) -> bool:
        if done > self.done_at_last:
            self.in_a_row = 0
        return self.in_a_row < _MAX_REFRESHES

    def spend(self, done: int) -> None:
        self.in_a_row += 1
        self.done_at_last = done


def _refused_signed_url(err: DownloadError) -> bool:
    """Storage refusing a URL that resolving again can replace (expired, 403 part-way)."""
    return err.status in (400, 403) and "auth mechanism" not in err.message


class _StatusPoller:
    """One ``system.multicall`` of ``tellStatus`` per tick for every running download,
    instead of one call per download: with many files the kernel sends one small
    message twice a second. A notification for a GID asks for the next tick now."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._waiting: dict[tuple[Aria2Client, str], list[asyncio.Future[dict[str, Any]]]] = {}
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        self._kick.set()

    async def status(self, client: Aria2Client, gid: str, now: bool = False) -> dict[str, Any]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault((client, gid), []).append(fut)
        if now:
            self._kick.set()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return await fut

    async def _run(self) -> None:
        while self._waiting:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.interval)
            self._kick.clear()
            batch, self._waiting = self._waiting, {}
            clients = {c for c, _ in batch}
            for client in clients:
                keys = [k for k in batch if k[0] is client]
                try:
                    results: list[Any] = await client.multicall(
                        [("aria2.tellStatus", [gid, _KEYS]) for _, gid in keys])
                except Exception as exc:  # noqa: BLE001 - handed to every waiter
                    results = [exc] * len(keys)
                for key, res in zip(keys, results, strict=True):
                    for fut in batch[key]:
                        if fut.done():
                            continue
                        if isinstance(res, BaseException):
                            fut.set_exception(res)
                        else:
                            fut.set_result(res)


class Aria2Engine:
    name = "aria2"

    def __init__(self, daemon: Aria2Daemon, poll_interval: float = 0.5,
                 min_split_size: str | None = None) -> None:
        self.daemon = daemon
        self.poll_interval = max(0.5, poll_interval)  # ≤ 2 Hz of tellStatus per download
        self._poller: _StatusPoller | None = None
        self.min_split_size = min_split_size
        self.last_stats: dict[str, Any] = {}
        self._io: ThreadPoolExecutor | None = None

    @property
    def io(self) -> ThreadPoolExecutor:
        """Threads that hash behind aria2's writer (the loop keeps serving RPC)."""
        if self._io is None:
            self._io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sdpanel-aria2-hash")
        return self._io

    def _options(self, t: Transfer) -> dict[str, Any]:
        conns = str(max(1, min(16, t.connections)))
        opts: dict[str, Any] = {
            "dir": str(t.part_path.parent), "out": t.part_path.name,
            "split": conns, "max-connection-per-server": conns,
            "min-split-size": self.min_split_size or split_size(t.size, int(conns)),
            "continue": "true",
            "file-allocation": "none", "allow-overwrite": "false",
            "auto-file-renaming": "false", "remote-time": "false",
            # Lowest free piece first: the complete prefix, which is what can be hashed
            # while the transfer runs, then trails the connections instead of staying at 0.
            "stream-piece-selector": "inorder",
        }
        host = urlsplit(t.url).hostname or ""
        # Headers only for the byte URL's own host; redirects were resolved before us, but
        # aria2 re-sends `header` on any further redirect, so nothing foreign goes here.
        if t.headers and host:
            opts["header"] = [f"{k}: {v}" for k, v in t.headers.items()]
        return opts

    def _identity(self) -> str:
        c = self.daemon.client
        return f"{self.daemon.pid}:{c.port if c else 0}"

    async def _add(self, client: Aria2Client, t: Transfer, save_state: SaveStateFn) -> str:
        t.part_path.parent.mkdir(parents=True, exist_ok=True)
        gid = str(await client.call("aria2.addUri", [t.url], self._options(t)))
        t.state.update(gid=gid, daemon=self._identity())
        save_state()
        return gid

    async def _known(self, client: Aria2Client, t: Transfer) -> str | None:
        """The journal's GID when this daemon still has it, else None."""
        gid = t.state.get("gid")
        if not gid or t.state.get("daemon") != self._identity():
            return None
        try:
            st = await client.call("aria2.tellStatus", gid, ["status"])
        except Aria2RpcError:
            return None
        if st.get("status") in ("removed",):
            return None
        if st.get("status") == "paused":
            await client.call("aria2.unpause", gid)
        return str(gid)

    async def fetch(self, t: Transfer, progress: ProgressFn, save_state: SaveStateFn) -> TransferResult:
        client = await self.daemon.ensure()
        if self._poller is None:
            self._poller = _StatusPoller(self.poll_interval)
        poller = self._poller
        gid = await self._known(client, t) or await self._add(client, t, save_state)
        hasher: PieceHasher | None = None
        hashing: asyncio.Future[None] | None = None

        async def stop_hashing() -> None:
            nonlocal hasher, hashing
            if hasher is not None:
                hasher.stop()
            if hashing is not None:
                hashing.cancel()
                await asyncio.gather(hashing, return_exceptions=True)
            if hasher is not None:
                await hasher.close()
            hasher = hashing = None

        async def hash_from_start() -> None:
            # A new GID may rewrite any byte (restart, refreshed URL): hash from offset 0.
            nonlocal hasher, hashing
            await stop_hashing()
            hasher = PieceHasher(t.part_path, self.io)
            hashing = asyncio.ensure_future(hasher.run(client, gid))

        await hash_from_start()

        def notify(_method: str, g: str) -> None:
            # Our GID changed state, or the connection dropped (""): look now, not at the poll.
            if g in (gid, ""):
                poller.kick()

        unsub = client.subscribe(notify)
        restarts = 0
        budget = _RefreshBudget()
        first = True
        try:
            while True:
                try:
                    st = await poller.status(client, gid, now=first)
                    first = False
                except Aria2RpcError:
                    # The daemon forgot it (restarted): re-add; aria2 resumes from .aria2.
                    gid = await self._add(client, t, save_state)
                    await hash_from_start()
                    continue
                except Aria2Unavailable:
                    restarts += 1
                    if restarts > _MAX_DAEMON_RESTARTS:
                        raise DownloadError("server_error", "The aria2c daemon keeps dying: "
                                            "see .sdpanel/logs/aria2.log, or choose the python "
                                            "engine.", retryable=False, resumable=True) from None
                    unsub()
                    client = await self.daemon.ensure()
                    unsub = client.subscribe(notify)
                    gid = await self._known(client, t) or await self._add(client, t, save_state)
                    await hash_from_start()
                    first = True
                    continue
                done = int(st.get("completedLength") or 0)
                total = int(st.get("totalLength") or 0) or t.size
                progress(done, total, float(st.get("downloadSpeed") or 0))
                status = st.get("status")
                if status == "complete":
                    with contextlib.suppress(Aria2RpcError, Aria2Unavailable):
                        await client.call("aria2.removeDownloadResult", gid)
                    size = t.part_path.stat().st_size
                    return TransferResult(size=size, sha256=await self._digest(hasher, hashing, size),
                                          content_type=None, filename=None)
                if status == "error":
                    err = aria2_error(st.get("errorCode", 1), st.get("errorMessage", ""), t.url)
                    if (str(st.get("errorCode")) == "22" and not _STATUS_RE.search(st.get("errorMessage", ""))) \
                            or err.reason == "unreachable":
                        # aria2 often reports only "No URI available", and a redirect to
                        # ftp:// as a failed connection (see ftp-proxy): ask the server ourselves.
                        probed = await _probe_error(t)
                        if probed is not None and (probed.reason != "unreachable" or err.reason != "unreachable"):
                            err = probed
                    with contextlib.suppress(Aria2RpcError, Aria2Unavailable):
                        await client.call("aria2.removeDownloadResult", gid)
                    if _refused_signed_url(err) and t.refresh_url is not None and budget.allows(done):
                        # A signed storage URL expired or was refused mid-way: resolve again
                        # from the API URL and resume the same out (the .aria2 control file
                        # keeps the finished pieces).
                        budget.spend(done)
                        t.url, t.headers = await t.refresh_url()
                        gid = await self._add(client, t, save_state)
                        await hash_from_start()
                        continue
                    t.state.pop("gid", None)
                    save_state()
                    raise err
                if status == "removed":
                    t.state.pop("gid", None)
                    raise DownloadError("cancelled", "The download was removed from aria2 "
                                        "outside sdpanel: retry it to continue.")
                if status == "paused":
                    await client.call("aria2.unpause", gid)
        except asyncio.CancelledError:
            # Paused or cancelled by the queue: stop aria2 writing. The .aria2 control file
            # stays so the next fetch resumes where this one stopped.
            await asyncio.shield(self._stop(client, gid))
            t.state.pop("gid", None)
            raise
        finally:
            unsub()
            await asyncio.shield(stop_hashing())

    async def _digest(self, hasher: PieceHasher | None, hashing: asyncio.Future[None] | None,
                      size: int) -> str:
        """The rest of the hash once aria2 said complete (only its last pieces, normally)."""
        assert hasher is not None
        hasher.stop()
        if hashing is not None:
            hashing.cancel()
            await asyncio.gather(hashing, return_exceptions=True)
        during = hasher.pos
        started = time.monotonic()
        digest = await hasher.finish(size)
        self.last_stats = {"hashed_during_bytes": during, "hash_tail_bytes": size - during,
                           "hash_tail_s": round(time.monotonic() - started, 3)}
        return digest

    async def _stop(self, client: Aria2Client, gid: str) -> None:
        with contextlib.suppress(Aria2RpcError, Aria2Unavailable):
            await client.call("aria2.forceRemove", gid)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                st = await client.call("aria2.tellStatus", gid, ["status"])
                if st.get("status") in ("removed", "complete", "error"):
                    break
                await asyncio.sleep(0.05)
            await client.call("aria2.removeDownloadResult", gid)

    async def close(self) -> None:
        await self.daemon.close()
        if self._io is not None:
            self._io.shutdown(wait=False)
            self._io = None
