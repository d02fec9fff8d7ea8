"""One attempt at one queued download, on behalf of :class:`~._queue.DownloadQueue`:
resolve the link, skip a file already in place, check the disk, run the engine, verify and
rename. Also owns what attempts share: the HTTP session and the engines.

The queue decides *when* (scheduling, retries, pause/cancel); this module does *what*.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from sdpanel.storage import (
    InsufficientSpaceError,
    ensure_free_space,
    free_bytes,
    human_bytes,
    reserve_bytes,
)

from ._engine import Engine, Transfer
from ._errors import DownloadError, unreachable_error
from ._finish import already_present, finalize, published_now, remove_part, target_name
from ._item import FINISHED, DownloadItem
from ._partlock import lock_part
from ._resolve import Resolved, resolve
from ._spec import DownloadSpec

if TYPE_CHECKING:
    from ._queue import DownloadQueue

__all__ = ["AttemptRunner", "transport_error"]


def transport_error(item: DownloadItem, exc: BaseException) -> DownloadError:
    """A transport error an engine let through, as the transient failure it is."""
    if isinstance(exc, aiohttp.ClientPayloadError):
        return DownloadError("truncated", f"The connection for {item.name} broke off mid-transfer "
                             f"({type(exc).__name__}); it resumes where it stopped.")
    return unreachable_error(item.spec.url, exc)


class SpaceWatch:
    """During a transfer: stop before the disk is full. Checked at most every ``interval``
    seconds; the bytes written since the last look are kept free too (they will be again
    by the next look), so a fast transfer stops in time."""

    def __init__(self, folder: Path, name: str, interval: float = 0.25) -> None:
        self.folder, self.name, self.interval = folder, name, interval
        self.reserve = reserve_bytes(folder)
        self._last, self._last_done = 0.0, 0

    def check(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        step = max(0, done - self._last_done)
        self._last, self._last_done = now, done
        free = free_bytes(self.folder)
        left = None if total is None else max(0, total - done)
        if free < self.reserve + min(2 * step, left if left is not None else 2 * step):
            # No size known means no ranges to resume from: the part is worth nothing.
            raise DownloadError(
                "disk_full", f"Stopped downloading {self.name}: the disk holding it is down to "
                f"{human_bytes(free)} free ({human_bytes(self.reserve)} is kept free for the "
                "system). Free space with `sdpanel clean`, then "
                + ("resume the download." if total else "retry (it starts over)."),
                retryable=False, resumable=bool(total))


def ensure_space(folder: Path, needed: int, name: str) -> None:
    try:
        ensure_free_space(folder, needed, what=name)
    except InsufficientSpaceError as exc:
        raise DownloadError("disk_full", exc.message, retryable=False, resumable=True) from None


class AttemptRunner:
    """Runs attempts for one queue. It reads the queue's settings live (``root``, ``tokens``,
    ``connections``, ``aria2_executable``: callers may change them between attempts) and
    reports through the queue's journal and event methods."""

    def __init__(self, queue: DownloadQueue) -> None:
        self.queue = queue
        self._engines: dict[str, Engine] = {}
        self._session: aiohttp.ClientSession | None = None

    async def run(self, item: DownloadItem) -> None:
        q = self.queue
        spec = item.spec
        folder = self._target_dir(spec)
        folder.mkdir(parents=True, exist_ok=True)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        twin = None if spec.sha256 else self._finished_twin(item)
        if twin is not None and twin.final_path and twin.sha256:
            # No hash from the source (a plain link, a preset without one): the file this
            # queue verified from the same URL before stands, if it is still that file.
            known = Path(twin.final_path)
            present = await already_present(known.parent, known.name, twin.sha256, spec.size)
            if present is not None:
                if item.part_path:
                    remove_part(Path(item.part_path))
                self._done(item, present, twin.sha256, skipped=True)
                return
        if spec.filename and spec.sha256:
            # Name and hash known from the API: a file already in place costs no request.
            present = await already_present(folder, target_name(spec, None, item.name),
                                            spec.sha256, spec.size)
            if present is not None:
                if item.part_path:
                    remove_part(Path(item.part_path))
                self._done(item, present, spec.sha256, skipped=True)
                return
        resolved = await resolve(spec, self._session, q.tokens)
        name = target_name(spec, resolved.filename, item.name)
        item.name = name
        item.name_guessed = item.name_guessed and not (spec.filename or resolved.filename)
        if item.part_path is None or Path(item.part_path).parent != folder:
            item.part_path = str(self._part_for(folder, name, item))
        part = Path(item.part_path)
        lock, waited = await lock_part(part, lambda: q._log(
            item, "info", f"{name}: another download is writing {part.name} in this folder; "
            "waiting for it to finish"))
        try:
            await self._fetch_locked(item, spec, folder, name, part, resolved, waited)
        finally:
            lock.release()

    async def _fetch_locked(self, item: DownloadItem, spec: DownloadSpec, folder: Path, name: str,
                            part: Path, resolved: Resolved, waited: bool) -> None:
        q = self.queue
        # Same name, same content already there → nothing to download (after a wait the
        # other writer may just have put it there).
        present = None if spec.filename and not waited else \
            await already_present(folder, name, spec.sha256, spec.size)
        if present is not None:
            remove_part(part)
            self._done(item, present, spec.sha256, skipped=True)
            return
        if spec.size:
            # Blocks really on disk: part files are sparse (the python engine sizes them
            # up front, aria2 writes segments anywhere), so st_size would overstate them.
            st = part.stat() if part.exists() else None
            have = min(st.st_size, st.st_blocks * 512) if st else 0
            ensure_space(folder, max(0, spec.size - have), name)
        q._save(force=True)
        q.budget.set_limit(q.max_concurrent * max(1, q.connections))  # settings may change
        item.tailing = False
        transfer = Transfer(url=resolved.url, headers=resolved.headers, part_path=part,
                            size=spec.size, sha256=spec.sha256, state=item.engine_state,
                            connections=q.connections, refresh_url=self._refresher(spec),
                            budget=q.budget, rank=item.seq - 1000 * item.priority,
                            on_tail=lambda: q._tail(item))
        checked_space = bool(spec.size)
        watch = SpaceWatch(folder, name)
        space_error: list[DownloadError] = []
        fetch = asyncio.ensure_future(self.engine(item.engine).fetch(
            transfer, lambda d, t, s: progress(d, t, s), lambda: q._save()))

        def progress(done: int, total: int | None, speed: float) -> None:
            nonlocal checked_space
            item.done, item.speed = done, speed
            if total:
                item.total = total
            try:
                if total and not checked_space:
                    # The size became known only now (no size in the spec): check the disk.
                    checked_space = True
                    ensure_space(folder, max(0, total - done), name)
                watch.check(done, total)  # other writers, or a size nobody announced, fill it
            except DownloadError as exc:
                if not space_error:
                    space_error.append(exc)
                    fetch.cancel()
            q._publish_progress(item)

        try:
            result = await fetch
        except asyncio.CancelledError:
            if space_error and item.stop is None:
                raise space_error[0] from None
            raise
        except DownloadError as exc:
            if exc.reason == "size_mismatch":
                await self._replaced_upstream(item)
            raise
        item.engine_state = transfer.state
        try:
            final, sha = await finalize(item, spec, part, result, folder)
        except DownloadError as exc:
            if exc.reason == "size_mismatch":  # an engine that did not know the size (aria2)
                await self._replaced_upstream(item)
            raise
        self._done(item, final, sha, skipped=False)

    def engine(self, name: str) -> Engine:
        engine = self._engines.get(name)
        if engine is None:
            if name == "aria2":
                from ._aria2 import Aria2Daemon
                from ._aria2_engine import Aria2Engine

                engine = Aria2Engine(Aria2Daemon(self.queue.root, self.queue.aria2_executable))
            else:
                from ._python_engine import PythonEngine

                engine = PythonEngine()
            self._engines[name] = engine
        return engine

    async def close(self, stop_idle_daemon: bool = False) -> None:
        """Close engines and the session; the aria2c daemon keeps running for the next
        kernel unless ``stop_idle_daemon`` and this queue started it and it is idle."""
        for engine in self._engines.values():
            daemon = getattr(engine, "daemon", None)
            if stop_idle_daemon and daemon is not None:
                with contextlib.suppress(Exception):
                    await daemon.shutdown_if_idle(wait=False)  # a CLI exits now
            with contextlib.suppress(Exception):
                await engine.close()
        self._engines.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _target_dir(self, spec: DownloadSpec) -> Path:
        root = self.queue.root
        if spec.folder:
            folder = Path(spec.folder).expanduser()
            return folder if folder.is_absolute() else root.path / folder
        return root.kind_dir(spec.kind)

    def _finished_twin(self, item: DownloadItem) -> DownloadItem | None:
        """A download of the same URL into the same place that finished verified (in this
        session or, through the journal, an earlier one)."""
        spec = item.spec
        for other in self.queue._items.values():
            if other is not item and other.state == "done" and other.sha256 and other.final_path \
                    and other.spec.url == spec.url and other.spec.folder == spec.folder \
                    and other.spec.kind == spec.kind and other.spec.filename == spec.filename:
                return other
        return None

    def _part_for(self, folder: Path, name: str, item: DownloadItem) -> Path:
        """``<name>.part``, unless another live item already writes that part file."""
        taken = {i.part_path for i in self.queue._items.values()
                 if i is not item and i.state not in FINISHED}
        candidate, n = folder / f"{name}.part", 2
        while str(candidate) in taken:
            candidate, n = folder / f"{name}.{n}.part", n + 1
        return candidate

    def _refresher(self, spec: DownloadSpec) -> Any:
        async def refresh() -> tuple[str, dict[str, str]]:
            assert self._session is not None
            again = await resolve(spec, self._session, self.queue.tokens)
            return again.url, again.headers
        return refresh

    async def _replaced_upstream(self, item: DownloadItem) -> None:
        """The server's file has another size than the source listed: ask the source again
        (authors replace CivitAI files silently). When it now lists another size, take the
        new size and hash and retry at once; otherwise the size mismatch stands."""
        spec = item.spec
        sha, size = await published_now(spec)
        if size is None or size == spec.size:
            return
        old = spec.size
        spec.metadata["size_replaced"], spec.metadata["sha256_replaced"] = old, spec.sha256
        spec.size, spec.sha256 = size, sha
        spec.metadata["sha256"] = sha
        raise DownloadError("changed_upstream", f"{item.name} was replaced at its source ({old} → "
                            f"{size} bytes, new SHA-256 published): downloading the new file.",
                            retryable=True, resumable=False)

    def _done(self, item: DownloadItem, final: Path, sha: str | None, *, skipped: bool) -> None:
        item.final_path, item.sha256 = str(final), sha
        item.state, item.speed, item.finished, item.error = "done", 0.0, time.time(), None
        item.engine_state = {}
        size = final.stat().st_size
        item.done = size
        item.total = size
        how = "already present, not downloaded again" if skipped else "downloaded and verified"
        self.queue._log(item, "info", f"{final.name}: {how}")
        self.queue._publish_state(item)
