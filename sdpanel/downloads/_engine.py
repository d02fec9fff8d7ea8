"""The byte-mover interface shared by the aria2c engine and the pure-Python engine.

The queue resolves redirects, picks an engine, hands it a :class:`Transfer` and gets a
:class:`TransferResult` back. Engines only ever write ``Transfer.part_path``; verification
and the rename to the final name belong to the queue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._budget import ConnectionBudget

__all__ = ["Engine", "ProgressFn", "RefreshFn", "SaveStateFn", "Transfer", "TransferResult"]

RefreshFn = Callable[[], Awaitable[tuple[str, dict[str, str]]]]
"""Resolves the source again after a signed storage URL expired: returns (url, headers)."""

ProgressFn = Callable[[int, "int | None", float], None]
"""(done_bytes, total_bytes, speed_bytes_per_s)."""

SaveStateFn = Callable[[], None]
"""Persists ``Transfer.state`` (the queue writes it into its journal)."""


@dataclass
class Transfer:
    url: str
    """The resolved byte URL (signed storage URL; never a token in it)."""
    headers: dict[str, str]
    """Headers for THIS url's host only (may be empty)."""
    part_path: Path
    """``<final>.part``: engines only ever write here."""
    size: int | None = None
    """Expected total size when known."""
    sha256: str | None = None
    """Expected lower-case hex digest when known."""
    state: dict[str, Any] = field(default_factory=dict)
    """Engine-owned resume state persisted in the journal (segment map, validators ...).
    Must stay JSON-serialisable."""
    connections: int = 16
    refresh_url: RefreshFn | None = None
    """Called when storage answers 403/400 on a previously working signed URL (expired)."""
    budget: ConnectionBudget | None = None
    """The queue's shared connection slots: each connection holds one while it works."""
    rank: int = 0
    """This file's place in the queue (earlier files get freed connections first)."""
    on_tail: Callable[[], None] | None = None
    """Called once when a connection of this transfer has nothing left to fetch: the queue
    may start the next file on the connections this one frees."""


@dataclass
class TransferResult:
    size: int
    sha256: str | None
    """Hex digest the engine computed while streaming, else None (the queue hashes)."""
    content_type: str | None
    filename: str | None
    """Raw (unsanitised) name from Content-Disposition when the server sent one."""


class Engine(Protocol):
    name: str
    """"python" | "aria2"."""

    async def fetch(
        self, t: Transfer, progress: ProgressFn, save_state: SaveStateFn
    ) -> TransferResult:
        """Write ``t.part_path``; update ``t.state`` and call ``save_state()`` (throttled,
        at most about once a second) so a crash resumes without refetching done bytes.
        Raises :class:`~sdpanel.downloads._errors.DownloadError` on failure; on
        ``asyncio.CancelledError`` leaves a consistent part file and state."""
        ...

    async def close(self) -> None: ...
