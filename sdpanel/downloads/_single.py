"""The Python engine's one-stream mode, for servers that ignore ranges or send no size:
sequential writes hashed as they go; a broken stream starts over (nothing to resume from)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from ._engine import TransferResult
from ._errors import disk_error

if TYPE_CHECKING:
    from ._python_engine import _Job

__all__ = ["single_stream"]


def _write_hash(fd: int, buf: bytearray, off: int, h: Any) -> int:
    h.update(buf)
    return os.pwrite(fd, buf, off)


async def single_stream(job: _Job, resp: aiohttp.ClientResponse | None, total: int | None
                        ) -> TransferResult:
    first = [resp]  # the probe's answer serves the first try; each retry asks again

    async def attempt() -> TransferResult:
        nonlocal total
        resp = first.pop() if first else None
        if resp is None or resp.status == 206:
            if resp is not None:
                resp.close()
            resp = await job.request(None, None)
            if resp.status != 200:
                raise await job.status_error(resp)
        if resp.status == 416:  # "bytes */0": an empty file
            resp.close()
            total = 0
        return await _stream_once(job, resp, total)

    return await job.retrying(attempt)


async def _stream_once(job: _Job, resp: aiohttp.ClientResponse, total: int | None
                       ) -> TransferResult:
    t, eng = job.t, job.eng
    loop = asyncio.get_running_loop()
    t.part_path.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    done, last_save, last_prog, t0 = 0, 0.0, 0.0, time.monotonic()
    try:
        fd = os.open(t.part_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as exc:
        raise disk_error(exc, t.part_path, resumable=False) from None
    t.state.clear()
    t.state.update(engine="python", mode="single", size=total, validator=job.validator,
                   content_type=job.content_type, filename=job.filename,
                   segments=[[0, total, 0]] if total else None)
    job.save_state()
    fut: asyncio.Future[int] | None = None
    try:
        buf = bytearray()
        while True:
            data = await resp.content.readany() if total != 0 else b""
            if data:
                buf += data
            if buf and (len(buf) >= eng.chunk_size or not data):
                fut = loop.run_in_executor(eng.io, _write_hash, fd, buf, done, h)
                try:
                    done += await asyncio.shield(fut)
                except OSError as exc:
                    raise disk_error(exc, t.part_path, resumable=False) from None
                buf = bytearray()
                now = time.monotonic()
                if total and now - last_save >= 1.0:
                    t.state["segments"] = [[0, total, done]]
                    job.save_state()
                    last_save = now
            now = time.monotonic()
            if now - last_prog >= 0.2:
                # Received, not only written: a slow stream fills the buffer for seconds.
                got = done + len(buf)
                job.progress(got, total, got / max(now - t0, 1e-6))
                last_prog = now
            if not data:
                break
    finally:
        resp.release()
        if fut is not None and not fut.done():
            await asyncio.wait([fut])  # cancelled mid-write: the fd must outlive the write
        os.close(fd)
        if total:
            t.state["segments"] = [[0, total, done]]
            job.save_state()
    if total is not None and done != total:
        raise aiohttp.ClientPayloadError(f"body ended at {done} of {total} bytes")
    job.progress(done, total if total is not None else done, 0.0)
    return TransferResult(done, h.hexdigest(), job.content_type, job.filename)
