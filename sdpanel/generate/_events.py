"""Per-job event log: every event a job emitted, with increasing ids, so a Server-Sent
Events client that reconnects with ``Last-Event-ID`` gets exactly what it missed.

Written on the runtime loop's thread, read by the jupyter-server's loop (or any other):
waiters are woken with ``call_soon_threadsafe`` on their own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

# Kinds of job events (the SSE ``event:`` field).
EVENT_KINDS = ("queued", "running", "progress", "preview", "done", "error")
FINAL_KINDS = frozenset({"done", "error"})


@dataclass(frozen=True)
class JobEvent:
    id: int
    kind: str
    data: dict[str, Any]

    def sse(self) -> str:
        import json

        return f"id: {self.id}\nevent: {self.kind}\ndata: {json.dumps(self.data)}\n\n"


class JobEventLog:
    """Append-only, except previews: only the newest is kept, so a long job's log stays
    small while a live client still sees each one as it comes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[JobEvent] = []
        self._next = 1
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def append(self, kind: str, data: dict[str, Any]) -> JobEvent:
        with self._lock:
            event = JobEvent(self._next, kind, data)
            self._next += 1
            if kind == "preview":  # keep only the newest preview (they are large)
                self._events = [e for e in self._events if e.kind != "preview"]
            self._events.append(event)
            waiters = list(self._waiters)
        for loop, flag in waiters:
            # A closed loop means its follower is gone already.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(flag.set)
        return event

    def since(self, last_id: int = 0) -> list[JobEvent]:
        with self._lock:
            return [e for e in self._events if e.id > last_id]

    @property
    def finished(self) -> bool:
        with self._lock:
            return bool(self._events) and self._events[-1].kind in FINAL_KINDS

    async def follow(self, last_id: int = 0, heartbeat: float | None = None
                     ) -> AsyncIterator[JobEvent | None]:
        """Yield events after ``last_id`` as they come, until the final one. With
        ``heartbeat``, yield None after that many idle seconds (keep-alive comments)."""
        loop = asyncio.get_running_loop()
        flag = asyncio.Event()
        entry = (loop, flag)
        with self._lock:
            self._waiters.add(entry)
        try:
            while True:
                flag.clear()
                for event in self.since(last_id):
                    last_id = event.id
                    yield event
                    if event.kind in FINAL_KINDS:
                        return
                try:
                    await asyncio.wait_for(flag.wait(), heartbeat)
                except asyncio.TimeoutError:
                    yield None
        finally:
            with self._lock:
                self._waiters.discard(entry)
