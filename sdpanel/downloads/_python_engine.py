"""The pure-Python byte mover (aiohttp): parallel ranges with work stealing, per-range retry,
If-Range change detection, resumable segment map, bounded memory, SHA-256 while it runs.

Used when aria2c is missing or the user picks it. One engine serves many transfers; each
``fetch`` runs a :class:`_Job`. Its HTTP side (probe, redirects, refresh, retries) is in
``_http_job``, each connection of ranged mode is a ``_range_worker.RangeWorker``, and a
server without ranges gets ``_single.single_stream``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ._engine import ProgressFn, SaveStateFn, Transfer, TransferResult
from ._errors import DownloadError, disk_error, redact_text
from ._http_job import NET_ERRORS, Changed, HttpJob, total_from, validator_of
from ._naming import filename_from_content_disposition
from ._range_worker import RangeWorker
from ._segments import HashCursor, SegmentMap, hash_rate, plan_parts
from ._single import single_stream

__all__ = ["PythonEngine"]

log = logging.getLogger("sdpanel.downloads.python")

_HASH_STEP = 4 << 20
"""The hash cursor starts a pass once the done prefix is this far ahead of it."""


class PythonEngine:
    """See the module docstring. Knobs are constructor arguments so tests and benchmarks can
    tune them; the defaults suit 1–30 GB model files over 16 connections."""

    name = "python"

    def __init__(
        self,
        *,
        chunk_size: int = 1 << 20,
        min_part: int = 1 << 20,
        min_piece: int = 256 << 10,
        max_tries: int = 8,
        backoff: float = 0.25,
        max_backoff: float = 15.0,
        connect_timeout: float = 30.0,
        read_timeout: float = 60.0,
        balanced: bool = True,
        max_restarts: int = 2,
        on_log: Callable[[str, str], None] | None = None,
    ) -> None:
        self.chunk_size = chunk_size
        self.min_part = min_part
        self.min_piece = min_piece
        self.max_tries = max_tries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout,
                                             sock_read=read_timeout)
        self.balanced = balanced
        self.max_restarts = max_restarts
        self.on_log = on_log
        self.last_stats: dict[str, Any] = {}
        self._session: aiohttp.ClientSession | None = None
        self._io_pool: ThreadPoolExecutor | None = None

    def log(self, level: str, message: str) -> None:
        message = redact_text(message)
        getattr(log, level if level != "warn" else "warning")(message)
        if self.on_log:
            self.on_log(level, message)

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                timeout=self.timeout, auto_decompress=False,
                headers={"User-Agent": "sdpanel", "Accept-Encoding": "identity"},
            )
        return self._session

    async def fetch(self, t: Transfer, progress: ProgressFn, save_state: SaveStateFn
                    ) -> TransferResult:
        job = _Job(self, t, progress, save_state)
        try:
            return await job.run()
        finally:
            self.last_stats = job.stats

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._io_pool is not None:
            self._io_pool.shutdown(wait=False)
            self._io_pool = None

    @property
    def io(self) -> ThreadPoolExecutor:
        """Threads for pwrite and hashing, so the event loop never waits on the disk."""
        if self._io_pool is None:
            self._io_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sdpanel-dl-io")
        return self._io_pool

    def delay(self, tries: int, err: DownloadError | None = None) -> float:
        if err is not None and err.retry_after:
            return min(err.retry_after, 60.0)
        return min(self.max_backoff, self.backoff * 2 ** (tries - 1)) * random.uniform(0.8, 1.2)


class _Job(HttpJob):
    def __init__(self, eng: PythonEngine, t: Transfer, progress: ProgressFn,
                 save_state: SaveStateFn) -> None:
        super().__init__(eng, t, progress, save_state)
        self.size = 0
        self.content_type: str | None = None
        self.filename: str | None = None
        self.map: SegmentMap | None = None
        self.speeds: dict[int, float] = {}
        self.fd = -1
        self.pending: set[asyncio.Future[Any]] = set()
        self.prefix_grew = asyncio.Event()
        self._tailing = False

    def tail_started(self) -> None:
        """A connection found nothing left to fetch: tell the queue (once)."""
        if not self._tailing:
            self._tailing = True
            if self.t.on_tail is not None:
                self.t.on_tail()

    # ---- top level ---------------------------------------------------------------
    async def run(self) -> TransferResult:
        restarts = 0
        while True:
            try:
                return await self._run_once()
            except Changed as exc:
                restarts += 1
                self.stats["restarts"] = restarts
                self.t.state.clear()
                if restarts > self.eng.max_restarts:
                    raise DownloadError(
                        "changed_upstream", f"The file at {urlsplit(self.url).hostname} kept "
                        f"changing while it downloaded ({exc}): try again later or pick a "
                        "pinned version.") from None
                self.eng.log("warning", f"file changed upstream ({exc}); restarting")

    async def _run_once(self) -> TransferResult:
        st = self.t.state
        resume = st.get("engine") == "python" and isinstance(st.get("segments"), list)
        old_validator = st.get("validator") if resume else None
        sent = time.monotonic()
        resp = await self.probe(old_validator)
        self.latency = time.monotonic() - sent
        if resp.status == 200 and old_validator:
            # Carried If-Range and got the whole file: it changed (or ranges are off now).
            resp.close()
            self.eng.log("info", "saved partial download is stale; starting over")
            st.clear()
            resume, old_validator = False, None
            resp = await self.probe(None)
        self.content_type = resp.headers.get("Content-Type")
        self.filename = filename_from_content_disposition(resp.headers.get("Content-Disposition"))
        self.validator = validator_of(resp.headers)
        total = total_from(resp)
        if self.t.size is not None and total is not None and total != self.t.size:
            resp.close()
            ctype = (self.content_type or "").lower()
            if resp.status == 200 and any(k in ctype for k in ("html", "json", "xml")):
                raise DownloadError("html_instead_of_model", f"{urlsplit(self.url).hostname} "
                                    f"sent a {ctype.split(';')[0]} page instead of the file "
                                    "(often a login or error page): check that the link is a "
                                    "direct download and that the needed token is set.")
            raise DownloadError("size_mismatch", f"The server's file is {total} bytes but the "
                                f"source said {self.t.size}: the link points to another file or "
                                "it changed — check the link or version.")
        if resp.status != 206 or total is None or total == 0:
            self.stats["mode"] = "single"
            return await single_stream(self, resp, total)
        # The one byte lets the connection be reused; if that breaks, it just is not.
        with contextlib.suppress(*NET_ERRORS):
            await resp.read()
        resp.release()
        self.size = total
        self.stats["mode"] = "ranges"
        return await self._ranges(resume and st.get("size") == total)

    # ---- ranged mode -------------------------------------------------------------
    async def _ranges(self, resume: bool) -> TransferResult:
        st = self.t.state
        smap = SegmentMap.from_state(self.size, st.get("segments")) if resume else None
        part = self.t.part_path
        if smap is not None and (not part.exists() or part.stat().st_size != self.size):
            smap = None
        part.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
            if smap is None:
                # Half the idle hash speed: the last round is hashed while the machine still
                # receives and writes the others' bytes (measured here: 1.8 GB/s idle, the
                # tail of a 2-round 256 MiB download ~0.9 GB/s).
                parts = plan_parts(self.size, self.t.connections, self.latency,
                                   self.eng.min_part, hash_rate() / 2)
                smap = SegmentMap.fresh(self.size, parts, self.eng.min_part,
                                        rounds=parts // max(1, self.t.connections))
                # Sparse: no zero-filling of large files. Never truncate to 0 first: on
                # ext4 that marks the file for a forced flush of all its data on close
                # (auto_da_alloc), 0.1 s per 256 MiB added to the end of every download.
                # Old bytes of a stale part are harmless: no byte counts until rewritten.
                os.ftruncate(self.fd, self.size)
        except OSError as exc:
            raise disk_error(exc, part) from None
        self.map = smap
        self.stats["resumed_bytes"] = smap.done_bytes()
        st.update(engine="python", size=self.size, validator=self.validator,
                  content_type=self.content_type, filename=self.filename,
                  segments=smap.to_state())
        self.save_state()
        cursor = HashCursor(self.fd, self.eng.io)
        n = max(1, self.t.connections)
        workers = [asyncio.ensure_future(RangeWorker(self, i).run()) for i in range(n)]
        helpers = [asyncio.ensure_future(self._ticker()),
                   asyncio.ensure_future(self._hasher(cursor))]
        try:
            await _first_error(workers)
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._drain()
            assert smap.complete()
            self.stats["hash_tail_bytes"] = self.size - cursor.pos
            t_hash = time.monotonic()
            await cursor.advance(self.size)
            self.stats["hash_tail_s"] = round(time.monotonic() - t_hash, 3)
            digest = cursor.hexdigest()
        finally:
            for task in [*workers, *helpers]:
                task.cancel()
            await asyncio.gather(*workers, *helpers, return_exceptions=True)
            await self._drain()
            await cursor.idle()
            st["segments"] = smap.to_state()
            self.stats["splits"] = smap.splits
            self.save_state()
            os.close(self.fd)
        self.progress(self.size, self.size, 0.0)
        return TransferResult(self.size, digest, self.content_type, self.filename)

    async def _drain(self) -> None:
        if self.pending:
            await asyncio.shield(asyncio.gather(*self.pending, return_exceptions=True))

    async def _ticker(self) -> None:
        """Progress ≤ 5/s over a sliding window, state saved ≤ 1/s. Progress counts bytes
        received (a slow connection fills its write buffer for seconds); the saved state
        only the written ones."""
        assert self.map is not None
        window: deque[tuple[float, int]] = deque()
        last_save, saved = time.monotonic(), None
        while True:
            await asyncio.sleep(0.2)
            now, got = time.monotonic(), self.map.received_bytes()
            window.append((now, got))
            while len(window) > 2 and now - window[0][0] > 5.0:
                window.popleft()
            t0, g0 = window[0]
            self.progress(got, self.size, (got - g0) / (now - t0) if now > t0 else 0.0)
            if now - last_save >= 1.0:
                state = self.map.to_state()
                if state != saved:
                    self.t.state["segments"], saved = state, state
                    self.save_state()
                last_save = now

    async def _hasher(self, cursor: HashCursor) -> None:
        """Hash the contiguous done prefix as soon as it has grown by a block (in the I/O
        pool: the loop keeps serving connections), so only what completes last is left to
        hash when the download ends."""
        assert self.map is not None
        while True:
            self.prefix_grew.clear()
            if self.map.prefix() - cursor.pos >= _HASH_STEP:
                await cursor.advance(self.map.prefix())
            else:
                await self.prefix_grew.wait()


async def _first_error(tasks: Sequence[asyncio.Future[None]]) -> None:
    """Wait for all tasks; on the first failure cancel the rest and raise it."""
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
