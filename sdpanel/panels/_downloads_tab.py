"""The Downloads tab: a row per file of the process's one download queue (name, kind, size,
progress, speed, ETA, state, the error's cause and fix), totals, per-file and all-files
actions, and the sound cues.

Flow: the queue publishes ``downloads`` events on the bus from the runtime loop; the
:class:`DownloadsController` here folds them into compact rows and writes the runtime-owned
``downloads`` trait through a :class:`~sdpanel.runtime.Publisher` (≤ 10 flushes/s, one
``hold_sync`` batch each). User intents (``downloads.pause`` …) go back to the queue's
coroutines with ``Runtime.submit``. One-off sound cues travel as custom messages
(``{"type": "cue", "cue": "file_done" | "queue_done" | "error"}``), never as state, so a
saved notebook does not replay them. The mute switch is the ``audio_muted`` setting, saved
to ``settings.json`` like the Settings tab saves its choices.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import traitlets

from ._controller import BusController, PanelSlot
from ._registry import register_tab

if TYPE_CHECKING:
    from sdpanel.downloads import DownloadQueue
    from sdpanel.runtime import Event

    from ._app import Panel

TOPIC = "downloads"
FINISHED_CAP = 50  # finished rows sent to the browser (newest first); live rows always go
NOTICE_CAP = 5  # errors that belong to no row (a link that did not resolve, a busy journal)
LIVE = ("active", "queued", "paused")
# Runtime task names whose failure means "the queue did not start" (the notice offers Retry).
_START_TASKS = frozenset({"downloads.restore", "downloads-panel-load"})


def compact_row(view: dict[str, Any]) -> dict[str, Any]:
    """One queue item (``DownloadQueue.items()`` entry) → the few fields the row shows."""
    sha = view.get("sha256") or ""
    return {
        "id": str(view["id"]), "name": str(view.get("name") or view["id"])[:160],
        "kind": str(view.get("kind") or ""), "state": str(view.get("state") or "queued"),
        "done": int(view.get("done") or 0), "total": view.get("total"),
        "speed": float(view.get("speed") or 0.0), "eta": view.get("eta"),
        "error": view.get("error"), "reason": view.get("reason"),
        "sha": sha[:12], "seq": view.get("added") or 0.0,
    }


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Bytes, speed and ETA of what is still to come, and a count per state."""
    live = [r for r in rows if r["state"] in LIVE]
    done = sum(r["done"] for r in live)
    total = sum(r["total"] or 0 for r in live)
    speed = sum(r["speed"] for r in live if r["state"] == "active")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    eta = (total - done) / speed if speed > 0 and total >= done else None
    return {"done": done, "total": total, "speed": speed, "eta": eta, "counts": counts}


class DownloadsController(BusController):
    """Feeds one panel from the queue's events. Event callbacks run on the runtime loop
    (where the queue publishes); actions run on the kernel thread and only submit work."""

    def __init__(self, panel: Any, queue_factory: Callable[[], DownloadQueue] | None = None,
                 *, max_rate: float = 10.0) -> None:
        super().__init__(panel, _MeteredPublisher(panel, max_rate=max_rate))
        self._factory = queue_factory or _default_queue
        self._queue: DownloadQueue | None = None
        self._rows: dict[str, dict[str, Any]] = {}
        self._notices: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._batch_done = 0  # files finished since the queue was last idle (queue_done cue)
        self.muted = False
        self.cpu_events = 0.0  # CPU seconds spent folding events (benchmark note)
        self.events = 0

    # ---- life cycle ------------------------------------------------------------------
    def attach(self) -> None:
        try:
            self.muted = bool(_settings().audio_muted)
        except Exception:  # noqa: BLE001 - a broken settings file must not hide the tab
            self.muted = False
        self.subscribe({TOPIC})
        self.reload()

    @property
    def queue(self) -> DownloadQueue:
        if self._queue is None:
            self._queue = self._factory()
        return self._queue

    def reload(self) -> None:
        """(Re)read every row from the queue, on the loop that owns it."""
        try:
            queue = self.queue
        except Exception as exc:  # noqa: BLE001 - e.g. storage not writable: say why, offer retry
            self._notice(_redact(f"The download queue could not start: {exc}"), retry=True)
            self._push()
            return

        async def seed() -> None:
            await queue.start()
            with self._lock:
                self._rows = {v["id"]: compact_row(v) for v in queue.items()}
            self._push()

        self.rt.submit(seed(), name="downloads-panel-load", topic=TOPIC)

    # ---- events (runtime loop) -----------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        from sdpanel.runtime import ErrorEvent, ProgressEvent, StateEvent

        t0 = time.thread_time()
        cue: str | None = None
        with self._lock:
            if isinstance(event, ProgressEvent):
                row = self._rows.get(event.key)
                if row is None:
                    return
                row["done"], row["speed"] = event.done, event.speed
                if event.total:
                    row["total"] = event.total
                row["eta"] = ((row["total"] - event.done) / event.speed
                              if row["total"] and event.speed > 0 else None)
            elif isinstance(event, StateEvent):
                cue = self._on_state(event)
            elif isinstance(event, ErrorEvent):
                cue = "error"
                if event.key not in self._rows:
                    self._notices_add(_redact(event.message), retry=event.key in _START_TASKS)
            else:
                return
        self._push()
        if cue:
            self.cue(cue)
        self.events += 1
        self.cpu_events += time.thread_time() - t0

    def _on_state(self, event: Any) -> str | None:
        if event.key == "queue":
            if event.state == "idle" and self._batch_done:
                self._batch_done = 0
                return "queue_done"
            return None
        if event.state == "removed":
            self._rows.pop(event.key, None)
            return None
        if not event.data:
            return None
        before = self._rows.get(event.key, {}).get("state")
        self._rows[event.key] = compact_row(event.data)
        if event.state == "done" and before != "done":
            self._batch_done += 1
            return "file_done"
        return None

    # ---- trait and cues ----------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            # Copies: the trait must not share dicts that later events mutate in place.
            rows = [dict(r) for r in self._rows.values()]
            notices = list(self._notices)
        rows.sort(key=lambda r: r["seq"])
        live = [r for r in rows if r["state"] in LIVE]
        finished = [r for r in rows if r["state"] not in LIVE][-FINISHED_CAP:]
        shown = sorted(live + finished, key=lambda r: r["seq"])
        return {"rows": shown, "totals": totals(rows), "hidden": len(rows) - len(shown),
                "notices": notices, "muted": self.muted}

    def _push(self) -> None:
        self.publisher.update(downloads=self.snapshot())

    def cue(self, name: str) -> None:
        """A one-off sound in every open view of the panel (the browser honours mute)."""
        # No comm (a closed panel): a sound is not worth a crash.
        with contextlib.suppress(Exception):
            self.panel.send({"type": "cue", "cue": name})

    def _notice(self, message: str, *, retry: bool = False) -> None:
        with self._lock:
            self._notices_add(message, retry=retry)

    def _notices_add(self, message: str, *, retry: bool) -> None:
        self._notices = [n for n in self._notices if n["message"] != message][-(NOTICE_CAP - 1):]
        self._notices.append({"id": f"n{time.monotonic_ns()}", "message": message, "retry": retry})

    # ---- actions (kernel thread) ---------------------------------------------------------
    def run(self, verb: str, item_id: str | None = None) -> None:
        q = self.queue
        calls: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "pause": lambda: q.pause(item_id), "resume": lambda: q.resume(item_id),
            "cancel": lambda: q.cancel(item_id), "retry": lambda: q.retry(item_id),
            "clear": q.clear_finished,
        }
        if verb not in calls:
            raise ValueError(f"Unknown downloads action {verb!r}")
        if item_id is not None and item_id not in self._rows:
            raise KeyError(f"That download is no longer in the list (id {item_id!r}); refresh the panel")
        self.rt.submit(calls[verb](), name=f"downloads.{verb}", topic=TOPIC)

    def dismiss(self, notice_id: str) -> None:
        with self._lock:
            self._notices = [n for n in self._notices if n["id"] != notice_id]
        self._push()

    def set_muted(self, muted: bool) -> None:
        from sdpanel.platforms import detect_platform
        from sdpanel.settings import load_settings, save_settings

        self.muted = bool(muted)
        # Persist only this choice on top of settings.json (as the Settings tab does), so
        # this session's notebook parameters do not become sticky defaults.
        root = _settings().storage or str(detect_platform().storage_root)
        on_disk = load_settings(root, env={})
        save_settings(on_disk.replace({"audio_muted": self.muted}, source="panel"), root)
        self._push()


class _MeteredPublisher:
    """The runtime's Publisher, counting CPU spent in its flushes (the benchmark reads it)."""

    def __init__(self, widget: Any, max_rate: float) -> None:
        from sdpanel.runtime import Publisher

        outer = self

        class Metered(Publisher):
            def flush(self) -> None:
                t0 = time.thread_time()
                super().flush()
                outer.cpu_flush += time.thread_time() - t0

        self.cpu_flush = 0.0
        self.inner = Metered(widget, max_rate=max_rate)

    @property
    def flushes(self) -> int:
        return self.inner.flushes

    def update(self, **values: Any) -> None:
        self.inner.update(**values)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


def _settings() -> Any:
    from ._settings_tab import resolved_settings

    return resolved_settings()


def _default_queue() -> DownloadQueue:
    from ._services import downloads_queue

    return downloads_queue()


def _redact(text: str) -> str:
    from sdpanel.settings import redact

    return redact(text)


# ---- registry glue -------------------------------------------------------------------------

_slot = PanelSlot("_sdp_downloads", "Downloads", DownloadsController)
controller = _slot.get


def _verb(verb: str) -> Callable[[Panel, dict[str, Any]], None]:
    def act(panel: Panel, msg: dict[str, Any]) -> None:
        item = msg.get("id")
        controller(panel).run(verb, str(item) if item else None)

    return act


def _mute(panel: Panel, msg: dict[str, Any]) -> None:
    controller(panel).set_muted(bool(msg.get("muted")))


def _dismiss(panel: Panel, msg: dict[str, Any]) -> None:
    controller(panel).dismiss(str(msg.get("notice", "")))


def _reload(panel: Panel, msg: dict[str, Any]) -> None:
    # After "the queue could not start" (a busy journal, an unwritable store): try again.
    ctl = controller(panel)
    if msg.get("notice"):
        ctl.dismiss(str(msg["notice"]))
    ctl.reload()


register_tab(
    "downloads",
    "Downloads",
    traits={"downloads": traitlets.Dict()},
    actions={
        **{f"downloads.{v}": _verb(v) for v in ("pause", "resume", "cancel", "retry", "clear")},
        "downloads.mute": _mute,
        "downloads.dismiss": _dismiss,
        "downloads.reload": _reload,
    },
    attach=_slot.attach,
    order=30,  # after Models (20): pick, then watch the bytes arrive
)
