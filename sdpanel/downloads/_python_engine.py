"""The pure-Python byte mover (aiohttp): parallel ranges with work stealing, per-range retry,
If-Range change detection, resumable segment map, bounded memory, SHA-256 while it runs.

Used when aria2c is missing or the user picks it. One engine serves many transfers; each
``fetch`` runs a :class:`_Job`.
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
from urllib.parse import urljoin, urlsplit

import aiohttp

from ._engine import ProgressFn, SaveStateFn, Transfer, TransferResult
from ._errors import DownloadError, disk_error, http_error, redact_text, unreachable_error
from ._naming import filename_from_content_disposition
from ._segments import HashCursor, Segment, SegmentMap, plan_parts
from ._single import single_stream

__all__ = ["PythonEngine"]

log = logging.getLogger("sdpanel.downloads.python")

_REDIRECTS = {301, 302, 303, 307, 308}
_HASH_STEP = 4 << 20
"""The hash cursor starts a pass once the done prefix is this far ahead of it."""
_NET_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


class _Changed(Exception):
    """The file changed upstream (validator or size differs): restart from scratch."""


class _Expired(Exception):
    """Storage refused a URL that worked before (403/400): resolve it again."""


class _Retry(Exception):
    def __init__(self, err: DownloadError) -> None:
        super().__init__(err.message)
        self.err = err


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


class _Job:
    def __init__(self, eng: PythonEngine, t: Transfer, progress: ProgressFn,
                 save_state: SaveStateFn) -> None:
        self.eng, self.t, self.progress, self.save_state = eng, t, progress, save_state
        self.url, self.headers = t.url, dict(t.headers)
        self.redirected = False
        self.url_gen = 0
        self.refresh_lock = asyncio.Lock()
        self.refreshes = 0
        self.validator: str | None = None
        self.size = 0
        self.content_type: str | None = None
        self.filename: str | None = None
        self.map: SegmentMap | None = None
        self.speeds: dict[int, float] = {}
        self.latency = 0.05
        self.fd = -1
        self.pending: set[asyncio.Future[Any]] = set()
        self.prefix_grew = asyncio.Event()
        self.stats: dict[str, Any] = {"splits": 0, "restarts": 0, "refreshes": 0,
                                      "retries": 0, "requests": 0, "mode": None,
                                      "resumed_bytes": 0, "bytes_by_worker": {}}

    # ---- top level ---------------------------------------------------------------
    async def run(self) -> TransferResult:
        restarts = 0
        while True:
            try:
                return await self._run_once()
            except _Changed as exc:
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
        resp = await self._probe(old_validator)
        self.latency = time.monotonic() - sent
        if resp.status == 200 and old_validator:
            # Carried If-Range and got the whole file: it changed (or ranges are off now).
            resp.close()
            self.eng.log("info", "saved partial download is stale; starting over")
            st.clear()
            resume, old_validator = False, None
            resp = await self._probe(None)
        self.content_type = resp.headers.get("Content-Type")
        self.filename = filename_from_content_disposition(resp.headers.get("Content-Disposition"))
        self.validator = _validator(resp.headers)
        total = _total_from(resp)
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
        with contextlib.suppress(*_NET_ERRORS):
            await resp.read()
        resp.release()
        self.size = total
        self.stats["mode"] = "ranges"
        return await self._ranges(resume and st.get("size") == total)

    # ---- probe -------------------------------------------------------------------
    async def _probe(self, if_range: str | None) -> aiohttp.ClientResponse:
        """``Range: bytes=0-0`` to learn size, validators and range support; follows
        redirects itself so headers never travel to another host."""
        tries = 0
        while True:
            try:
                resp = await self.request("bytes=0-0", if_range, follow=True)
                if resp.status in (200, 206):
                    return resp
                if resp.status == 416 and resp.headers.get("Content-Range") == "bytes */0":
                    return resp  # an empty file
                raise await self.status_error(resp)
            except _Expired:
                await self.refresh(self.url_gen)
                continue
            except _Retry as exc:
                err = exc.err
            except _NET_ERRORS as exc:
                err = unreachable_error(self.url, exc)
            tries += 1
            self.stats["retries"] += 1
            if tries >= self.eng.max_tries:
                raise err
            await asyncio.sleep(self.eng.delay(tries, err))

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
            if urlsplit(target).netloc != urlsplit(self.url).netloc:
                # Headers (tokens) belong to their own host only.
                headers = {k: v for k, v in headers.items() if k in ("Range", "If-Range")}
                self.headers = {}
            self.url, self.redirected = target, True
        raise DownloadError("server_error", "Too many redirects from "
                            f"{urlsplit(self.url).hostname}: check the link.", retryable=False)

    async def status_error(self, resp: aiohttp.ClientResponse) -> Exception:
        """The exception for a non-success answer: _Expired when storage refuses a URL that
        can be resolved again, _Retry for retryable statuses, else the DownloadError."""
        body = await resp.content.read(4096)
        resp.close()
        if resp.status in (400, 403) and (self.t.refresh_url or self.redirected) \
                and self.refreshes < 5:  # in a row without progress: a real refusal
            return _Expired()
        err = http_error(resp.status, self.url, body, dict(resp.headers))
        return _Retry(err) if err.retryable else err

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
                parts = plan_parts(self.size, self.t.connections, self.latency,
                                   self.eng.min_part)
                smap = SegmentMap.fresh(self.size, parts, self.eng.min_part,
                                        rounds=parts // max(1, self.t.connections))
                os.ftruncate(self.fd, 0)
                os.ftruncate(self.fd, self.size)  # sparse: no zero-filling of large files
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
        workers = [asyncio.ensure_future(self._worker(i)) for i in range(n)]
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
        """Progress ≤ 5/s over a sliding window, state saved ≤ 1/s."""
        assert self.map is not None
        window: deque[tuple[float, int]] = deque()
        last_save, saved = time.monotonic(), None
        while True:
            await asyncio.sleep(0.2)
            now, done = time.monotonic(), self.map.done_bytes()
            window.append((now, done))
            while len(window) > 2 and now - window[0][0] > 5.0:
                window.popleft()
            t0, d0 = window[0]
            self.progress(done, self.size, (done - d0) / (now - t0) if now > t0 else 0.0)
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

    async def _worker(self, wid: int) -> None:
        assert self.map is not None
        eng = self.eng
        while True:
            # 1. a range that would still run when everything else is done (a slow
            # connection's), 2. the next unassigned range in file order, 3. the tail.
            horizon = self._horizon() if eng.balanced and self.map.has_unowned() else None
            slow = self._slow(wid)
            # A slow connection takes from the file's end only what it can fetch by the
            # time the rest is done (but enough to be worth a request).
            limit = max(eng.min_piece, int(self.speeds[wid] * horizon)) \
                if slow and horizon else None
            seg = (horizon is not None and self.map.steal(
                wid, self.speeds, self.latency, eng.min_piece, horizon=horizon)) or \
                self.map.take_unowned(wid, from_end=slow, limit=limit) or \
                self.map.steal(wid, self.speeds, self.latency, eng.min_piece, eng.balanced)
            if not seg:
                return
            try:
                await self._fill(seg, wid)
            finally:
                seg.owner = None

    def _slow(self, wid: int) -> bool:
        """Much slower than the typical connection (by its last measured speed)."""
        mine = self.speeds.get(wid)
        if not mine or len(self.speeds) < 3:
            return False
        return mine < 0.4 * sorted(self.speeds.values())[len(self.speeds) // 2]

    def _horizon(self) -> float | None:
        """Seconds the rest should take at the connections' measured speeds."""
        assert self.map is not None
        if len(self.speeds) < max(1, self.t.connections // 2):
            return None
        total = sum(self.speeds.values())
        return (self.size - self.map.done_bytes()) / total if total > 0 else None

    async def _fill(self, seg: Segment, wid: int) -> None:
        """Fetch ``seg`` until done, retrying with backoff; bounded tries without progress."""
        tries = 0
        while not seg.finished:
            before, gen = seg.done, self.url_gen
            try:
                await self._fetch_range(seg, wid)
                continue
            except _Expired:
                await self.refresh(gen)
                continue
            except _Retry as exc:
                err = exc.err
            except aiohttp.ClientPayloadError as exc:
                err = DownloadError("truncated", f"The connection to {urlsplit(self.url).hostname}"
                                    f" kept breaking mid-transfer ({exc}): resume later.")
            except _NET_ERRORS as exc:
                err = unreachable_error(self.url, exc)
            tries = 1 if seg.done > before else tries + 1
            self.stats["retries"] += 1
            if tries >= self.eng.max_tries:
                raise err
            await asyncio.sleep(self.eng.delay(tries, err))

    async def _fetch_range(self, seg: Segment, wid: int) -> None:
        start, end = seg.done, seg.end
        sent = time.monotonic()
        resp = await self.request(f"bytes={start}-{end - 1}", self.validator)
        try:
            if resp.status == 200:
                # If-Range was sent: a whole file under another validator is a new file; an
                # answer without one (an error page, a proxy) is a transient failure.
                got_validator = _validator(resp.headers)
                if got_validator is not None and got_validator != self.validator:
                    raise _Changed("whole file sent for a ranged request")
                raise _Retry(DownloadError("server_error", "the server ignored a byte range",
                                           retryable=True))
            if resp.status != 206:
                raise await self.status_error(resp)
            cr = resp.headers.get("Content-Range", "")
            if not cr.startswith(f"bytes {start}-") or _total_from(resp) != self.size:
                raise _Changed(f"unexpected Content-Range {cr!r}")
            first = time.monotonic()
            self.latency = 0.8 * self.latency + 0.2 * (first - sent)
            # Received pieces are gathered (not copied) and written with one pwritev.
            buf: list[bytes] = []
            buf_off, buffered, got = start, 0, 0
            while True:
                try:
                    data = await resp.content.readany()
                except _NET_ERRORS:
                    if buf:  # what arrived before the break is good: keep it for the retry
                        await self._write(buf_off, buf, buffered, seg)
                    raise
                if not data:
                    break
                room = seg.end - (buf_off + buffered)
                if len(data) >= room:
                    if room > 0:
                        buf.append(data[:room])
                        buffered += room
                        got += room
                    break  # reached the (maybe shrunk by a steal) end of the segment
                buf.append(data)
                buffered += len(data)
                seg.read_pos = buf_off + buffered
                got += len(data)
                elapsed = time.monotonic() - sent
                if elapsed > 0.15:  # a slow connection must show as slow before its 1st write
                    self.speeds[wid] = got / elapsed
                if buffered >= self.eng.chunk_size:
                    await self._write(buf_off, buf, buffered, seg)
                    buf_off, buf, buffered = seg.done, [], 0
            if buf:
                await self._write(buf_off, buf, buffered, seg)
            elapsed = time.monotonic() - sent
            if elapsed <= 0.15 and got >= self.eng.min_piece:
                # A range too short for the in-flight measure: a connection that was slow
                # and was replaced (closed by a split) must not stay labelled slow.
                self.speeds[wid] = got / elapsed
            by = self.stats["bytes_by_worker"]
            by[wid] = by.get(wid, 0) + got
            if not seg.finished:
                raise aiohttp.ClientPayloadError(
                    f"body ended at {seg.done} before {seg.end}")
        finally:
            # Reuses the connection when the body was read to its end; a segment shrunk by a
            # steal leaves unread bytes on the wire, and then aiohttp closes it instead.
            resp.release()

    async def _write(self, off: int, buf: list[bytes], n_bytes: int, seg: Segment) -> None:
        """pwritev in the I/O pool; the segment counts the bytes only once they are written,
        so a crash at any point leaves a map that never claims missing bytes."""
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self.eng.io, os.pwritev, self.fd, buf, off)
        self.pending.add(fut)
        try:
            n = await asyncio.shield(fut)
        except OSError as exc:
            raise disk_error(exc, self.t.part_path) from None
        finally:
            if fut.done():
                self.pending.discard(fut)
            else:
                fut.add_done_callback(self.pending.discard)
        if n != n_bytes:
            raise disk_error(OSError(28, "short write"), self.t.part_path)
        seg.done = min(seg.end, max(seg.done, off + n))
        self.refreshes = 0
        self.prefix_grew.set()


async def _first_error(tasks: Sequence[asyncio.Future[None]]) -> None:
    """Wait for all tasks; on the first failure cancel the rest and raise it."""
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


def _validator(headers: Any) -> str | None:
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return str(etag)
    lm = headers.get("Last-Modified")
    return str(lm) if lm else None


def _total_from(resp: aiohttp.ClientResponse) -> int | None:
    cr = resp.headers.get("Content-Range")
    if cr:
        total = cr.rpartition("/")[2].strip()
        return int(total) if total.isdigit() else None
    if resp.status == 200 and resp.content_length is not None:
        return resp.content_length
    return None
