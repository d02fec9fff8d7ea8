"""The download queue: several files at once, priorities, pause/resume/cancel/retry, a
journal on disk and totals. One attempt at one file (free-space checks, the engine,
verification and the final rename) lives in :mod:`._attempt`.

A plain asyncio service living on the runtime loop; it publishes ``downloads`` events on
the bus and never imports a front end. Every mutating method is a coroutine (front ends
call them through ``Runtime.submit``); ``items()`` / ``totals()`` are cheap snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp

from sdpanel.runtime import ErrorEvent, EventBus, LogEvent, ProgressEvent, StateEvent
from sdpanel.storage import StorageRoot

from ._attempt import AttemptRunner, transport_error
from ._budget import ConnectionBudget
from ._errors import MASK, DownloadError, redact_text
from ._finish import remove_part
from ._item import FINISHED, DownloadItem
from ._journal import Journal
from ._spec import DownloadSpec

__all__ = ["TOPIC", "DownloadQueue", "pick_engine"]

TOPIC = "downloads"
_KEEP_FINISHED = 200  # finished items kept in the journal for the panel's history


def pick_engine(choice: str, executable: str = "aria2c") -> str:
    """"auto" → aria2 when aria2c is on PATH, else python."""
    if choice not in ("auto", "aria2", "python"):
        raise ValueError(f"Unknown download engine {choice!r}: use auto, aria2 or python")
    if choice == "auto":
        return "aria2" if shutil.which(executable) else "python"
    return choice


class DownloadQueue:
    def __init__(self, storage_root: str | os.PathLike[str] | StorageRoot, bus: EventBus | None = None,
                 *, max_concurrent: int = 3, engine: str = "auto", connections: int = 16,
                 tokens: dict[str, str | None] | None = None, max_attempts: int = 4,
                 retry_backoff: float = 1.0, progress_interval: float = 0.25,
                 aria2_executable: str = "aria2c", journal: str = "downloads") -> None:
        self.root = storage_root if isinstance(storage_root, StorageRoot) else StorageRoot.at(storage_root)
        self.bus = bus or EventBus()
        self.max_concurrent = max(1, max_concurrent)
        self.engine_choice = engine
        pick_engine(engine, aria2_executable)  # validate early
        self.connections = connections
        # Shared by every transfer: a file in its tail passes freed connections to the next.
        self.budget = ConnectionBudget(self.max_concurrent * max(1, connections))
        self.tokens = tokens
        self.max_attempts = max(1, max_attempts)
        self.retry_backoff = retry_backoff
        self.progress_interval = progress_interval
        self.aria2_executable = aria2_executable
        self.journal = Journal(self.root.state_path("journals", f"{journal}.json"))
        self._items: dict[str, DownloadItem] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._attempts = AttemptRunner(self)
        self._seq = 0
        self._started = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._changed = asyncio.Event()
        self._last_save = 0.0
        self._save_handle: asyncio.TimerHandle | None = None
        self._last_progress: dict[str, float] = {}

    # ---- public API ------------------------------------------------------------------
    async def start(self) -> DownloadQueue:
        """Restore the journal (unfinished items resume) and start scheduling. Idempotent."""
        if not self._started:
            self.journal.lock()
            self._started = True
            await self.restore()
        return self

    async def restore(self) -> list[str]:
        """Load the journal: items that were queued or active resume from their part files;
        paused ones stay paused; finished ones are kept as history."""
        self.journal.lock()
        resumed: list[str] = []
        for data in self.journal.load():
            try:
                item = DownloadItem.from_journal(data)
            except (TypeError, ValueError, KeyError):
                continue
            if item.id in self._items:
                continue
            if item.state == "active":
                item.state = "queued"
            if item.state in ("queued", "paused") and f"={MASK}" in item.spec.url:
                # Its token or signature was never saved: only the user can give it again.
                item.state = "failed"
                item.error = DownloadError(
                    "auth", f"{item.name or 'This download'}: its link carried a token or signature, "
                    "which sdpanel never saves: paste the link again to continue.",
                    retryable=False, resumable=True).to_dict()
            self._seq = max(self._seq, item.seq + 1)
            self._items[item.id] = item
            if item.state == "queued":
                resumed.append(item.id)
                self._publish_state(item)
        self._started = True
        self._kick()
        return resumed

    async def add(self, specs: DownloadSpec | Iterable[DownloadSpec], *, engine: str | None = None) -> list[str]:
        """Queue downloads; returns their ids. A spec already queued or running (same URL
        and target) returns the existing id instead of downloading twice."""
        await self.start()
        engine_name = pick_engine(engine or self.engine_choice, self.aria2_executable)
        ids: list[str] = []
        batch = [specs] if isinstance(specs, DownloadSpec) else list(specs)
        for spec in batch:  # bad input fails here, before anything is queued
            if not spec.folder:
                self.root.kind_dir(spec.kind)
            if not spec.url.startswith(("http://", "https://")):
                raise ValueError(f"Cannot download {redact_text(spec.url)!r}: only http(s) URLs are supported")
        for spec in batch:
            twin = self._twin(spec)
            if twin is not None:
                ids.append(twin.id)
                continue
            item = DownloadItem(spec=spec, engine=engine_name, seq=self._next_seq())
            self._items[item.id] = item
            ids.append(item.id)
            self._publish_state(item)
        self._save(force=True)
        self._kick()
        return ids

    async def pause(self, item_id: str | None = None) -> None:
        for item in self._select(item_id, {"queued", "active"}):
            await self._stop(item, "pause")
            item.state, item.speed = "paused", 0.0
            self._publish_state(item)
        self._save(force=True)
        self._kick()

    async def resume(self, item_id: str | None = None) -> None:
        for item in self._select(item_id, {"paused"}):
            item.state = "queued"
            self._publish_state(item)
        self._save(force=True)
        self._kick()

    async def cancel(self, item_id: str | None = None) -> None:
        """Stop and forget: the partial file is deleted."""
        for item in self._select(item_id, {"queued", "active", "paused", "failed"}):
            await self._stop(item, "cancel")
            await self._engine_state_reset(item)
            item.state, item.speed, item.finished = "cancelled", 0.0, time.time()
            self._publish_state(item)
        self._save(force=True)
        self._kick()

    async def retry(self, item_id: str | None = None) -> None:
        for item in self._select(item_id, {"failed", "cancelled"}):
            item.state, item.error, item.attempts, item.finished = "queued", None, 0, None
            self._publish_state(item)
        self._save(force=True)
        self._kick()

    async def clear_finished(self) -> None:
        """Drop done/failed/cancelled rows from the list (files stay where they are)."""
        for item in [i for i in self._items.values() if i.state in FINISHED]:
            del self._items[item.id]
            self.bus.publish(StateEvent(topic=TOPIC, key=item.id, state="removed", data={"id": item.id}))
        self._save(force=True)

    async def set_priority(self, item_id: str, priority: int) -> None:
        """Higher runs first; takes effect for items not yet started."""
        self._items[item_id].priority = priority
        self._save(force=True)
        self._kick()

    async def set_max_concurrent(self, n: int) -> None:
        self.max_concurrent = max(1, n)
        self.budget.set_limit(self.max_concurrent * max(1, self.connections))
        self._kick()

    def items(self) -> list[dict[str, Any]]:
        # list() copies in one step under the GIL: panels read this from other threads.
        return [i.view() for i in sorted(list(self._items.values()), key=lambda i: i.seq)]

    def item(self, item_id: str) -> dict[str, Any]:
        return self._items[item_id].view()

    def totals(self) -> dict[str, Any]:
        snapshot = list(self._items.values())
        live = [i for i in snapshot if i.state in ("queued", "active", "paused")]
        done = sum(i.done for i in live)
        total = sum(i.total or 0 for i in live)
        speed = sum(i.speed for i in live if i.state == "active")
        counts = {s: 0 for s in ("queued", "active", "paused", "done", "failed", "cancelled")}
        for i in snapshot:
            counts[i.state] = counts.get(i.state, 0) + 1
        eta = (total - done) / speed if speed > 0 and total >= done else None
        return {"done": done, "total": total, "speed": speed, "eta": eta, "counts": counts}

    async def wait_all(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Block (headless cells, the CLI) until nothing is queued or active."""
        await self.start()
        await asyncio.wait_for(self._idle.wait(), timeout)
        return self.items()

    async def wait(self, ids: Iterable[str], timeout: float | None = None) -> list[dict[str, Any]]:
        """Block until the given items are finished (done/failed/cancelled) or paused."""
        wanted = list(ids)

        async def settled() -> None:
            while any(self._items[i].state in ("queued", "active") for i in wanted):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(settled(), timeout)
        return [self._items[i].view() for i in wanted]

    async def close(self, stop_idle_daemon: bool = False) -> None:
        """Stop running transfers (they stay resumable: the journal keeps them active) and
        close engines; the aria2c daemon keeps running for the next kernel unless
        ``stop_idle_daemon`` (one-shot CLI runs) and this queue started it and it is idle."""
        for item in list(self._items.values()):
            if item.id in self._tasks:
                await self._stop(item, "close")
        if self._started:
            self._save(force=True)
        self.journal.unlock()
        self._started = False
        await self._attempts.close(stop_idle_daemon)

    # ---- scheduling ------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _twin(self, spec: DownloadSpec) -> DownloadItem | None:
        for i in self._items.values():
            if i.state not in FINISHED and i.spec.url == spec.url and i.spec.folder == spec.folder \
                    and i.spec.kind == spec.kind and i.spec.filename == spec.filename:
                return i
        return None

    def _select(self, item_id: str | None, states: set[str]) -> list[DownloadItem]:
        if item_id is not None:
            if item_id not in self._items:
                raise KeyError(f"No download with id {item_id!r}")
            chosen = [self._items[item_id]]
        else:
            chosen = list(self._items.values())
        return [i for i in chosen if i.state in states]

    def _kick(self) -> None:
        waiting = sorted((i for i in self._items.values() if i.state == "queued"),
                         key=lambda i: (-i.priority, i.seq))
        for item in waiting:
            # A file whose connections are running out of work does not count: the next
            # one starts and takes each connection it frees (the budget keeps the total).
            filling = sum(1 for i in self._tasks if not self._items[i].tailing)
            if filling >= self.max_concurrent or len(self._tasks) >= 2 * self.max_concurrent:
                break
            item.state, item.stop, item.tailing = "active", None, False
            self._publish_state(item)
            self._tasks[item.id] = asyncio.ensure_future(self._run(item))
        busy = bool(self._tasks) or any(i.state == "queued" for i in self._items.values())
        if busy:
            self._idle.clear()
        elif not self._idle.is_set():
            self._idle.set()
            self._save(force=True)
            self.bus.publish(StateEvent(topic=TOPIC, key="queue", state="idle", data=self.totals()))

    async def _stop(self, item: DownloadItem, why: str) -> None:
        task = self._tasks.get(item.id)
        if task is None:
            return
        item.stop = why
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def _engine_state_reset(self, item: DownloadItem) -> None:
        if item.part_path:
            remove_part(Path(item.part_path))
        item.engine_state, item.done = {}, 0

    # ---- one download ----------------------------------------------------------------
    async def _run(self, item: DownloadItem) -> None:
        try:
            while True:
                item.attempts += 1
                try:
                    try:
                        await self._attempts.run(item)
                        break
                    except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as raw:
                        # An engine let a transport error through: treat it as the transient
                        # failure it is (retried, part kept) rather than a dead download.
                        raise transport_error(item, raw) from raw
                except DownloadError as exc:
                    if not exc.resumable:
                        await self._engine_state_reset(item)
                    if exc.retryable and item.attempts < self.max_attempts:
                        delay = exc.retry_after if exc.retry_after is not None else \
                            self.retry_backoff * 2 ** (item.attempts - 1)
                        delay = min(delay, 60.0)
                        self._log(item, "warning", f"{item.name}: {exc.message} (attempt "
                                  f"{item.attempts} of {self.max_attempts}, next in {delay:.0f} s)")
                        await asyncio.sleep(delay)
                        continue
                    self._fail(item, exc)
                    break
        except asyncio.CancelledError:
            item.speed = 0.0
            if item.stop is None:  # cancelled from outside (loop shutdown): resume later
                raise
        except Exception as exc:  # a bug must not kill the queue: report it on the item
            self._fail(item, DownloadError("server_error", f"{item.name}: unexpected "
                                           f"{type(exc).__name__}: {exc}", retryable=False))
        finally:
            self._tasks.pop(item.id, None)
            self._save(force=True)
            if item.stop is None:
                self._kick()

    def _tail(self, item: DownloadItem) -> None:
        if item.id in self._tasks and not item.tailing:
            item.tailing = True
            self._kick()

    def _fail(self, item: DownloadItem, exc: DownloadError) -> None:
        item.state, item.speed, item.finished = "failed", 0.0, time.time()
        message = exc.message
        if exc.retryable:
            # The retries are spent: "it will be retried" is no longer true.
            message = re.sub(r"[;,]? ?(and )?it will be retried", "", message).rstrip(" .;—-")
            message += f". Gave up after {item.attempts} attempts; retry once that is fixed."
        item.error = {"reason": exc.reason, "message": message}
        self._publish_state(item)
        self.bus.publish(ErrorEvent(topic=TOPIC, key=item.id, message=f"{item.name}: {message}",
                                    error_type=exc.reason))

    # ---- events and journal ----------------------------------------------------------
    def _publish_state(self, item: DownloadItem) -> None:
        self._changed.set()
        self.bus.publish(StateEvent(topic=TOPIC, key=item.id, state=item.state, data=item.view()))

    def _publish_progress(self, item: DownloadItem) -> None:
        now = time.monotonic()
        if now - self._last_progress.get(item.id, 0.0) < self.progress_interval:
            return
        self._last_progress[item.id] = now
        self.bus.publish(ProgressEvent(topic=TOPIC, key=item.id, done=item.done, total=item.total,
                                       speed=item.speed, message=item.name))
        self._save()

    def _log(self, item: DownloadItem, level: str, message: str) -> None:
        self.bus.publish(LogEvent(topic=TOPIC, key=item.id, level=level,  # type: ignore[arg-type]
                                  message=redact_text(message)))

    def _save(self, force: bool = False) -> None:
        """Write the journal: at once for state changes, at most once a second otherwise."""
        now = time.monotonic()
        if not force and now - self._last_save < 1.0:
            if self._save_handle is None:
                with contextlib.suppress(RuntimeError):
                    self._save_handle = asyncio.get_running_loop().call_later(
                        1.0 - (now - self._last_save), self._save, True)
            return
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        self._last_save = now
        items = sorted(self._items.values(), key=lambda i: i.seq)
        finished = [i for i in items if i.state in FINISHED]
        drop = {i.id for i in finished[:-_KEEP_FINISHED]} if len(finished) > _KEEP_FINISHED else set()
        self.journal.save([i.to_journal() for i in items if i.id not in drop])
