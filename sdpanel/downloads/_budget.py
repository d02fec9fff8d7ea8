"""The connections a queue's transfers may hold at once (``jobs × connections per file``),
shared so that a file in its tail hands each freed connection to the next file instead of
leaving it idle while files remain. Earlier files get freed connections first."""

from __future__ import annotations

import asyncio
import heapq
import itertools

__all__ = ["ConnectionBudget"]


class ConnectionBudget:
    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.used = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def acquire(self, rank: int = 0) -> None:
        """One connection slot; lower ``rank`` (the queue's order) is served first."""
        if self.used < self.limit and not self._waiters:
            self.used += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (rank, next(self._order), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # granted just as we were cancelled: hand it on
            raise

    def release(self) -> None:
        self.used -= 1
        self._grant()

    def set_limit(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._grant()

    def _grant(self) -> None:
        while self._waiters and self.used < self.limit:
            _rank, _n, fut = heapq.heappop(self._waiters)
            if not fut.done():
                self.used += 1
                fut.set_result(None)
