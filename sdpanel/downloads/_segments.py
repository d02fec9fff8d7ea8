"""The Python engine's segment map (resume state and work stealing) and its hash cursor.

A file of ``size`` bytes is tiled by segments ``[start, end)``; ``done`` is how far the bytes
from ``start`` are on disk. The map is what the journal stores, as ``[[start, end, done], ...]``,
so a crash resumes without refetching done bytes. Only bytes whose write has completed are
ever counted as done.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from concurrent.futures import Executor
from dataclasses import dataclass

__all__ = ["HashCursor", "Segment", "SegmentMap", "hash_rate", "plan_parts"]

_ALIGN = 64 * 1024


@dataclass
class Segment:
    start: int
    end: int
    done: int
    owner: int | None = None
    """The worker fetching it right now."""
    read_pos: int = 0
    """How far the owner has read (in memory, maybe not yet on disk): a split goes above it."""

    @property
    def finished(self) -> bool:
        return self.done >= self.end

    @property
    def remaining(self) -> int:
        return max(0, self.end - max(self.done, self.read_pos))


def _key(owner: int | None) -> int:
    return -1 if owner is None else owner


_HASH_RATE: list[float] = []


def hash_rate() -> float:
    """Bytes per second SHA-256 runs at on this machine, measured once per process on
    4 MiB (2–8 ms). It decides how many rounds a download is cut into: from 0.5 GB/s
    (no SHA instructions) to 2 GB/s (SHA-NI) the right count for a 50 MiB file goes from
    2 rounds to 1, and every round costs each connection one first-byte wait."""
    if not _HASH_RATE:
        block = bytes(4 << 20)
        t0 = time.perf_counter()
        hashlib.sha256(block).digest()
        _HASH_RATE.append(len(block) / max(1e-6, time.perf_counter() - t0))
    return _HASH_RATE[0]


def plan_parts(size: int, connections: int, latency: float, min_part: int,
               hash_rate: float = 500e6) -> int:
    """How many segments a fresh download starts with: ``connections`` × rounds.

    Segments are taken lowest offset first, so with several rounds the contiguous prefix
    grows while the download runs and the hash cursor follows it; only the last round is
    left to hash at the end, and :meth:`SegmentMap.fresh` makes each round smaller than the
    one before (the last holds ``2 / (rounds * (rounds + 1))`` of the file). Each extra
    round costs one first-byte ``latency`` per connection; ``rounds = (4 * size / (hash_rate
    * latency)) ** (1/3)`` balances that against the hashing left for the end."""
    connections = max(1, connections)
    rounds = round((4 * size / (hash_rate * min(1.0, max(0.005, latency)))) ** (1 / 3))
    most = max(1, size // (connections * max(1, min_part)))
    return connections * max(1, min(rounds, most, 64))


class SegmentMap:
    def __init__(self, size: int, segments: list[Segment]) -> None:
        self.size = size
        self.segments = sorted(segments, key=lambda s: s.start)
        self.splits = 0

    @classmethod
    def fresh(cls, size: int, parts: int, min_part: int, rounds: int = 1) -> SegmentMap:
        """``parts`` segments in ``rounds`` rounds (of ``parts / rounds`` segments each):
        round ``j`` of ``k`` gets a share ∝ ``k - j``, so the rounds shrink and the last one,
        which the hash cursor can only follow once it is all done, is the smallest."""
        parts = max(1, min(parts, size // max(1, min_part)))
        per = max(1, -(-parts // max(1, rounds)))
        weights = [rounds - i // per for i in range(parts)]
        total, acc, bounds = sum(weights), 0, [0]
        for w in weights:
            acc += w
            bounds.append(size * acc // total)
        return cls(size, [Segment(a, b, a) for a, b in zip(bounds, bounds[1:], strict=False)
                          if b > a])

    @classmethod
    def from_state(cls, size: int, raw: object) -> SegmentMap | None:
        """Rebuild a saved map; None when it does not tile ``[0, size)`` exactly (corrupt or
        from another file) — the caller then starts afresh rather than trusting it."""
        if not isinstance(raw, list):
            return None
        segs: list[Segment] = []
        try:
            for item in raw:
                a, b, d = (int(x) for x in item)
                if not (0 <= a <= d <= b <= size):
                    return None
                segs.append(Segment(a, b, d))
        except (TypeError, ValueError):
            return None
        segs.sort(key=lambda s: s.start)
        pos = 0
        for s in segs:
            if s.start != pos:
                return None
            pos = s.end
        if pos != size:
            return None
        return cls(size, segs)

    def to_state(self) -> list[list[int]]:
        return [[s.start, s.end, s.done] for s in self.segments]

    def done_bytes(self) -> int:
        return sum(s.done - s.start for s in self.segments)

    def received_bytes(self) -> int:
        """Bytes read so far, on disk or still in a connection's write buffer: what progress
        shows, so the bar moves with the network rather than once per buffer flush. Never
        saved: the state (``to_state``) counts only ``done``, the written bytes."""
        return sum(max(s.done, min(s.read_pos, s.end)) - s.start for s in self.segments)

    def complete(self) -> bool:
        return all(s.finished for s in self.segments)

    def prefix(self) -> int:
        """End of the contiguous done bytes from offset 0 (what the hash cursor may read)."""
        pos = 0
        for s in self.segments:
            if s.start != pos:
                break
            pos = s.done
            if not s.finished:
                break
        return pos

    def has_unowned(self) -> bool:
        return any(s.owner is None and not s.finished for s in self.segments)

    def take_unowned(self, worker: int, from_end: bool = False, limit: int | None = None
                     ) -> Segment | None:
        """The first unassigned range in file order (so the hashed prefix keeps growing);
        ``from_end`` for a slow connection, whose range would otherwise hold it back: it gets
        the last unassigned range, or with ``limit`` only that many bytes of its far end
        (what it can fetch by the time the rest is done), so it never holds up the finish."""
        for s in reversed(self.segments) if from_end else self.segments:
            if s.owner is None and not s.finished:
                if from_end and limit is not None and s.end - s.done > limit + _ALIGN:
                    mid = max(s.done + _ALIGN, (s.end - max(limit, _ALIGN)) // _ALIGN * _ALIGN)
                    s = self._split(s, mid, worker)
                s.owner = worker
                s.read_pos = s.done
                return s
        return None

    def _split(self, seg: Segment, mid: int, worker: int) -> Segment:
        """Cut ``seg`` at ``mid``; the far part becomes a new segment owned by ``worker``."""
        new = Segment(mid, seg.end, mid, owner=worker, read_pos=mid)
        seg.end = mid
        self.segments.insert(self.segments.index(seg) + 1, new)
        self.splits += 1
        return new

    def steal(
        self,
        worker: int,
        speeds: dict[int, float],
        latency: float,
        min_piece: int,
        balanced: bool = True,
        horizon: float | None = None,
    ) -> Segment | None:
        """Work stealing: take the far part of the range expected to finish last.

        With ``balanced`` the split point is where both sides should finish together given
        their measured speeds and the first-byte latency the stealer pays; for equal speeds
        and no latency this is the middle. Without speeds (or ``balanced=False``) it is the
        middle. With ``horizon`` (the seconds the whole rest of the download should take)
        only a range that would end well after it qualifies — stolen early, while unassigned
        ranges remain, by a connection that is not slow itself — and its (clearly slow) owner
        keeps only what arrives meanwhile. Returns the new
        segment, owned by ``worker``, or None when nothing is worth splitting."""
        known = [v for v in speeds.values() if v > 0]
        if horizon is not None and not known:
            return None
        default = sorted(known)[len(known) // 2] if known else 1.0
        u = speeds.get(worker) or default

        def eta(s: Segment) -> float:
            return s.remaining / (speeds.get(_key(s.owner)) or default)

        cands = [s for s in self.segments
                 if s.owner is not None and s.owner != worker and s.remaining >= 2 * min_piece]
        if horizon is not None:
            # Only clearly slow owners: splitting fast ones on noisy speeds just churns
            # connections.
            cands = [s for s in cands if eta(s) > 1.5 * horizon + 2 * latency
                     and (speeds.get(_key(s.owner)) or default) < 0.5 * default]
        if not cands:
            return None
        victim = max(cands, key=eta)
        base = max(victim.done, victim.read_pos)
        rem = victim.end - base
        v = speeds.get(_key(victim.owner)) or default
        if horizon is not None:
            if u < 0.5 * default:
                return None  # a slow stealer would only take a slow owner's place
            # The slow owner keeps only what it reads while the stealer's first byte is on
            # its way: left the range it holds, it would stall the hash cursor there until
            # the end (it then takes a piece of the file's end it can finish in time).
            keep = v * latency
        elif balanced and known:
            # the owner keeps x bytes where x / v == latency + (rem - x) / u
            keep = (latency + rem / u) / (1 / v + 1 / u)
        else:
            keep = rem / 2
        keep = max(float(_ALIGN), keep)  # the owner may keep little; the stolen part must be worth a request
        if rem - keep < min_piece:
            return None
        mid = base + int(keep)
        if rem > 4 * _ALIGN:
            mid = min(victim.end - min_piece, -(-mid // _ALIGN) * _ALIGN)
        if mid <= base or mid >= victim.end:
            return None
        return self._split(victim, mid, worker)


class HashCursor:
    """SHA-256 of the part file, advanced over the contiguous done prefix while the rest is
    still downloading, so completion needs no second pass over most of the file."""

    def __init__(self, fd: int, executor: Executor, block: int = 4 << 20) -> None:
        self.fd = fd
        self.pos = 0
        self._h = hashlib.sha256()
        self._executor = executor
        self._block = block
        self._lock = asyncio.Lock()
        self._fut: asyncio.Future[None] | None = None

    def _hash(self, end: int) -> None:
        while self.pos < end:
            data = os.pread(self.fd, min(self._block, end - self.pos), self.pos)
            if not data:
                raise OSError(f"part file shorter than expected at {self.pos}")
            self._h.update(data)  # releases the GIL for large buffers
            self.pos += len(data)

    async def advance(self, end: int) -> None:
        # One hashing thread at a time, even when a caller was cancelled mid-way (the
        # thread keeps running; the next caller waits for it before going on).
        async with self._lock:
            if self._fut is not None and not self._fut.done():
                await asyncio.shield(self._fut)
            if end > self.pos:
                loop = asyncio.get_running_loop()
                self._fut = loop.run_in_executor(self._executor, self._hash, end)
                await asyncio.shield(self._fut)

    async def idle(self) -> None:
        """Wait for a hashing thread left running by a cancelled caller (before the fd
        it reads is closed)."""
        fut = self._fut
        if fut is not None and not fut.done():
            await asyncio.gather(asyncio.shield(fut), return_exceptions=True)

    def hexdigest(self) -> str:
        return self._h.hexdigest()
