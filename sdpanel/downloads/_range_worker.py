"""One connection of the Python engine's ranged mode: which range it takes next (work
stealing, slow connections sent to the file's end), and the fetch loop that gathers a range
into a bounded buffer and writes it with pwritev, counting bytes done only once written.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING

import aiohttp

from ._errors import DownloadError, disk_error
from ._http_job import NET_ERRORS, Changed, Retry, total_from, validator_of
from ._segments import Segment

if TYPE_CHECKING:
    from ._python_engine import _Job

__all__ = ["RangeWorker"]


class RangeWorker:
    """Connection ``wid`` of ``job``: takes ranges until none is left worth taking."""

    def __init__(self, job: _Job, wid: int) -> None:
        self.job, self.wid = job, wid

    async def run(self) -> None:
        budget = self.job.t.budget
        if budget is not None:
            await budget.acquire(self.job.t.rank)
        try:
            await self._work()
        finally:
            if budget is not None:
                budget.release()

    async def _work(self) -> None:
        job, eng, smap = self.job, self.job.eng, self.job.map
        assert smap is not None
        while True:
            # 1. a range that would still run when everything else is done (a slow
            # connection's), 2. the next unassigned range in file order, 3. the tail.
            horizon = self._horizon() if eng.balanced and smap.has_unowned() else None
            slow = self._slow()
            # A slow connection takes from the file's end only what it can fetch by the
            # time the rest is done (but enough to be worth a request).
            limit = max(eng.min_piece, int(job.speeds[self.wid] * horizon)) \
                if slow and horizon else None
            seg = (horizon is not None and smap.steal(
                self.wid, job.speeds, job.latency, eng.min_piece, horizon=horizon)) or \
                smap.take_unowned(self.wid, from_end=slow, limit=limit) or \
                smap.steal(self.wid, job.speeds, job.latency, eng.min_piece, eng.balanced)
            if not seg:
                job.tail_started()
                return
            try:
                await self._fill(seg)
            finally:
                seg.owner = None

    def _slow(self) -> bool:
        """Much slower than the typical connection (by its last measured speed)."""
        speeds = self.job.speeds
        mine = speeds.get(self.wid)
        if not mine or len(speeds) < 3:
            return False
        return mine < 0.4 * sorted(speeds.values())[len(speeds) // 2]

    def _horizon(self) -> float | None:
        """Seconds the rest should take at the connections' measured speeds."""
        job = self.job
        assert job.map is not None
        if len(job.speeds) < max(1, job.t.connections // 2):
            return None
        total = sum(job.speeds.values())
        return (job.size - job.map.done_bytes()) / total if total > 0 else None

    async def _fill(self, seg: Segment) -> None:
        """Fetch ``seg`` until done, retrying with backoff; bounded tries without progress."""

        async def attempt() -> None:
            while not seg.finished:
                await self._fetch_range(seg)

        await self.job.retrying(attempt, progressed=lambda: seg.done)

    async def _fetch_range(self, seg: Segment) -> None:
        job, wid = self.job, self.wid
        start, end = seg.done, seg.end
        sent = time.monotonic()
        resp = await job.request(f"bytes={start}-{end - 1}", job.validator)
        try:
            if resp.status == 200:
                # If-Range was sent: a whole file under another validator is a new file; an
                # answer without one (an error page, a proxy) is a transient failure.
                got_validator = validator_of(resp.headers)
                if got_validator is not None and got_validator != job.validator:
                    raise Changed("whole file sent for a ranged request")
                raise Retry(DownloadError("server_error", "the server ignored a byte range",
                                          retryable=True))
            if resp.status != 206:
                raise await job.status_error(resp)
            cr = resp.headers.get("Content-Range", "")
            if not cr.startswith(f"bytes {start}-") or total_from(resp) != job.size:
                raise Changed(f"unexpected Content-Range {cr!r}")
            first = time.monotonic()
            job.latency = 0.8 * job.latency + 0.2 * (first - sent)
            # Received pieces are gathered (not copied) and written with one pwritev.
            buf: list[bytes] = []
            buf_off, buffered, got = start, 0, 0
            while True:
                try:
                    data = await resp.content.readany()
                except NET_ERRORS:
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
                seg.read_pos = buf_off + buffered  # received: shown as progress, never saved
                got += len(data)
                elapsed = time.monotonic() - sent
                if elapsed > 0.15:  # a slow connection must show as slow before its 1st write
                    job.speeds[wid] = got / elapsed
                if buffered >= job.eng.chunk_size:
                    await self._write(buf_off, buf, buffered, seg)
                    buf_off, buf, buffered = seg.done, [], 0
            if buf:
                await self._write(buf_off, buf, buffered, seg)
            elapsed = time.monotonic() - sent
            if elapsed <= 0.15 and got >= job.eng.min_piece:
                # A range too short for the in-flight measure: a connection that was slow
                # and was replaced (closed by a split) must not stay labelled slow.
                job.speeds[wid] = got / elapsed
            by = job.stats["bytes_by_worker"]
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
        job = self.job
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(job.eng.io, os.pwritev, job.fd, buf, off)
        job.pending.add(fut)
        try:
            n = await asyncio.shield(fut)
        except OSError as exc:
            raise disk_error(exc, job.t.part_path) from None
        finally:
            if fut.done():
                job.pending.discard(fut)
            else:
                fut.add_done_callback(job.pending.discard)
        if n != n_bytes:
            raise disk_error(OSError(28, "short write"), job.t.part_path)
        seg.done = min(seg.end, max(seg.done, off + n))
        job.refreshes = 0
        job.prefix_grew.set()
