"""SHA-256 of an aria2 download while aria2 writes it: the hasher asks the daemon which
pieces are complete (``tellStatus`` → ``bitfield``) and reads the file's contiguous
complete prefix behind the writer, so when aria2 reports the download complete only the
last pieces are left to hash and the queue needs no second pass over the file.

aria2 fetches pieces lowest-first when asked (``stream-piece-selector=inorder``, set by
the engine): the prefix then trails the connections by about one piece each instead of
staying at zero until the very end as with the default selector.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from ._aria2 import Aria2Client, Aria2RpcError, Aria2Unavailable
from ._segments import HashCursor

__all__ = ["PieceHasher", "complete_prefix"]

_KEYS = ["status", "bitfield", "pieceLength", "totalLength"]
_NIBBLE_LEAD = {f"{v:x}": (4 if v == 15 else (0 if v < 8 else 1 if v < 12 else 2 if v < 14 else 3))
                for v in range(16)}
"""Leading set bits of a hex digit (piece 0 is the most significant bit of the bitfield)."""


def complete_prefix(status: dict[str, Any]) -> int:
    """Bytes from offset 0 that aria2 has completely written, from a ``tellStatus``."""
    total = int(status.get("totalLength") or 0)
    piece = int(status.get("pieceLength") or 0)
    bits = str(status.get("bitfield") or "").lower()
    if status.get("status") == "complete":
        return total
    if not total or not piece or not bits:
        return 0
    pieces = 0
    for ch in bits:
        lead = _NIBBLE_LEAD.get(ch, 0)
        pieces += lead
        if lead < 4:
            break
    return min(total, pieces * piece)


class PieceHasher:
    """Hashes one GID's output file behind aria2. ``run`` polls until cancelled; after
    aria2 reports completion, ``finish`` hashes what is left and returns the digest."""

    def __init__(self, path: Path, executor: Executor, interval: float = 0.1) -> None:
        self.path = path
        self.executor = executor
        self.interval = interval
        self._fd = -1
        self._cursor: HashCursor | None = None
        self._stopped = False

    def _open(self) -> HashCursor | None:
        if self._cursor is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return None  # aria2 creates the file once the first response arrives
            self._cursor = HashCursor(self._fd, self.executor)
        return self._cursor

    async def run(self, client: Aria2Client, gid: str) -> None:
        # Ends by ``stop()`` as well as by cancellation: on Python 3.11 ``wait_for`` (inside
        # ``client.call``) can swallow a cancel that lands as its reply arrives, and the
        # GID is gone by then (its result removed), so nothing else would end this loop.
        while not self._stopped:
            try:
                st = await client.call("aria2.tellStatus", gid, _KEYS)
            except Aria2RpcError:
                return  # aria2 no longer knows the GID: the engine's loop handles that
            except Aria2Unavailable:
                st = {}
            if st.get("status") in ("complete", "error", "removed"):
                return  # the engine's loop decides what follows
            prefix = complete_prefix(st) if st else 0
            cursor = self._open()
            if cursor is not None and prefix > cursor.pos and not self._stopped:
                await cursor.advance(prefix)
            await asyncio.sleep(self.interval)

    def stop(self) -> None:
        self._stopped = True

    @property
    def pos(self) -> int:
        """Bytes hashed so far (a hashing thread may still be moving it)."""
        return self._cursor.pos if self._cursor is not None else 0

    async def finish(self, size: int) -> str:
        cursor = self._open()
        if cursor is None:
            raise FileNotFoundError(self.path)
        await cursor.advance(size)
        return cursor.hexdigest()

    async def close(self) -> None:
        if self._cursor is not None:
            await self._cursor.idle()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._cursor = None
