"""One writer per ``.part`` file, across queues and processes.

The queue keeps its own items apart (``AttemptRunner._part_for``), but two stores or two
processes downloading into one folder would otherwise write the same ``<name>.part``
together: doubled traffic, a failed side, and a printed hash that is not the final file's.
The part file itself carries an exclusive ``flock`` while an attempt owns it (the engines'
own descriptors are unaffected: flock binds to our open file). Locks die with the process,
so a killed kernel never blocks the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["PartLock", "lock_part"]

_POLL_S = 0.2


class PartLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # The holder may have moved the finished part to its final name meanwhile: a lock
        # on that old inode guards nothing, so only the file now at ``path`` counts.
        if os.fstat(fd).st_ino == os.stat(path).st_ino:
            return fd
    except (BlockingIOError, FileNotFoundError):
        pass
    os.close(fd)
    return None


async def lock_part(path: Path, on_wait: Callable[[], None] | None = None) -> tuple[PartLock, bool]:
    """Own ``path`` (created empty if missing); waits while another process writes it.
    Returns the lock and whether it had to wait (the other writer may have produced the
    file meanwhile). Cancelling the wait (pause, cancel) leaves nothing behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        fd = await asyncio.to_thread(_try_lock, path)
        if fd is not None:
            return PartLock(path, fd), waited
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        await asyncio.sleep(_POLL_S)
