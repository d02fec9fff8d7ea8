"""The Downloads tab's Python side: queue events → compact rows in the ``downloads`` trait,
throttled writes, intents reaching the queue, and sound cues sent as custom messages (never
as state) on a file done, the whole queue done and an error."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdpanel.panels._downloads_tab import DownloadsController, compact_row, totals
from sdpanel.runtime import ErrorEvent, ProgressEvent, StateEvent, get_runtime
from tests.fixtures.waiting import wait_for


class FakePanel:
    """What the controller needs of a Panel: hold_sync, traits as attributes, send()."""

    def __init__(self) -> None:
        self.downloads: dict[str, Any] = {}
        self.sent: list[dict[str, Any]] = []
        self.batches = 0

    @contextlib.contextmanager
    def hold_sync(self) -> Iterator[None]:
        self.batches += 1
        yield

    def send(self, msg: dict[str, Any]) -> None:
        self.sent.append(msg)


class FakeQueue:
    def __init__(self, items: list[dict[str, Any]] | None = None) -> None:
        self._items = items or []
        self.calls: list[tuple[str, Any]] = []

    async def start(self) -> FakeQueue:
        return self

    def items(self) -> list[dict[str, Any]]:
        return list(self._items)

    async def pause(self, item_id: str | None = None) -> None:
        self.calls.append(("pause", item_id))

    async def resume(self, item_id: str | None = None) -> None:
        self.calls.append(("resume", item_id))

    async def cancel(self, item_id: str | None = None) -> None:
        self.calls.append(("cancel", item_id))

    async def retry(self, item_id: str | None = None) -> None:
        self.calls.append(("retry", item_id))

    async def clear_finished(self) -> None:
        self.calls.append(("clear", None))


def view(id: str, state: str = "active", done: int = 0, total: int | None = 1000, **kw: Any) -> dict[str, Any]:
    return {"id": id, "name": f"{id}.safetensors", "kind": "loras", "state": state, "done": done,
            "total": total, "speed": 0.0, "eta": None, "error": None, "reason": None, "sha256": None,
            "added": float(len(id)), **kw}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakePanel, FakeQueue, DownloadsController]]:
    monkeypatch.setenv("SDPANEL_STORAGE", str(tmp_path / "store"))
    monkeypatch.setenv("SDPANEL_PLATFORM", "local")
    panel, queue = FakePanel(), FakeQueue([view("a", "queued"), view("bb", "done", 5, 5, sha256="f" * 64)])
    ctl = DownloadsController(panel, lambda: queue)  # type: ignore[arg-type,return-value]
    ctl.attach()
    wait_for(lambda: len(panel.downloads.get("rows", [])) == 2)
    try:
        yield panel, queue, ctl
    finally:
        ctl.detach()


def publish(*events: Any) -> None:
    for e in events:
        get_runtime().bus.publish(e)


def rows(panel: FakePanel) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in panel.downloads["rows"]}


def test_rows_from_queue_then_events(env: tuple[FakePanel, FakeQueue, DownloadsController]) -> None:
    panel, _queue, ctl = env
    assert rows(panel)["bb"]["sha"] == "f" * 12  # a short prefix, not the whole hash
    publish(StateEvent(topic="downloads", key="a", state="active", data=view("a")),
            ProgressEvent(topic="downloads", key="a", done=250, total=1000, speed=100.0))
    ctl.publisher.flush()
    a = rows(panel)["a"]
    assert (a["state"], a["done"], a["total"], a["speed"]) == ("active", 250, 1000, 100.0)
    assert a["eta"] == pytest.approx(7.5)
    t = panel.downloads["totals"]
    assert (t["done"], t["total"], t["speed"], t["eta"]) == (250, 1000, 100.0, pytest.approx(7.5))
    assert t["counts"] == {"active": 1, "done": 1}
    # Other topics never reach the tab; a removed row disappears.
    publish(ProgressEvent(topic="generate", key="a", done=999, total=1000),
            StateEvent(topic="downloads", key="bb", state="removed", data={"id": "bb"}))
    ctl.publisher.flush()
    assert set(rows(panel)) == {"a"} and rows(panel)["a"]["done"] == 250


def test_failed_row_shows_cause_and_fix(env: tuple[FakePanel, FakeQueue, DownloadsController]) -> None:
    panel, _queue, ctl = env
    msg = "a.safetensors: CivitAI answered 401: this model needs a CivitAI token; set CIVITAI_TOKEN in the Settings cell."
    publish(StateEvent(topic="downloads", key="a", state="failed",
                       data=view("a", "failed", error=msg, reason="auth")),
            ErrorEvent(topic="downloads", key="a", message=msg, error_type="auth"))
    ctl.publisher.flush()
    row = rows(panel)["a"]
    assert row["state"] == "failed" and row["error"] == msg and row["reason"] == "auth"
    assert panel.downloads["notices"] == []  # the error belongs to its row
    assert panel.sent == [{"type": "cue", "cue": "error"}]


def test_cues_are_messages_not_state(env: tuple[FakePanel, FakeQueue, DownloadsController]) -> None:
    panel, _queue, ctl = env
    publish(StateEvent(topic="downloads", key="a", state="active", data=view("a")),
            StateEvent(topic="downloads", key="a", state="done", data=view("a", "done", 1000, sha256="a" * 64)),
            # A repeated "done" (e.g. journal restore) does not chime again.
            StateEvent(topic="downloads", key="a", state="done", data=view("a", "done", 1000)),
            StateEvent(topic="downloads", key="queue", state="idle", data={}))
    assert panel.sent == [{"type": "cue", "cue": "file_done"}, {"type": "cue", "cue": "queue_done"}]
    # Idle again with nothing finished since (e.g. after "cancel all"): no fanfare.
    publish(StateEvent(topic="downloads", key="queue", state="idle", data={}))
    assert len(panel.sent) == 2
    ctl.publisher.flush()
    assert "cue" not in repr(panel.downloads)


def test_error_without_row_becomes_notice(env: tuple[FakePanel, FakeQueue, DownloadsController]) -> None:
    panel, _queue, ctl = env
    publish(ErrorEvent(topic="downloads", key="downloads.restore",
                       message="The journal is in use by another process (pid 42): close it or wait."),
            ErrorEvent(topic="downloads", key="resolve:x", message="x: not queued. Unknown preset 'x'."))
    ctl.publisher.flush()
    notes = panel.downloads["notices"]
    assert [n["retry"] for n in notes] == [True, False]
    assert "pid 42" in notes[0]["message"]
    ctl.dismiss(notes[1]["id"])
    ctl.publisher.flush()
    assert len(panel.downloads["notices"]) == 1


def test_progress_is_throttled(env: tuple[FakePanel, FakeQueue, DownloadsController]) -> None:
    panel, _queue, ctl = env
    before = ctl.publisher.flushes
    start = time.monotonic()
    for i in range(1, 2001):
        publish(ProgressEvent(topic="downloads", key="a", done=i // 2, total=1000, speed=10.0))
    elapsed = time.monotonic() - start
    wait_for(lambda: rows(panel)["a"]["done"] == 1000)
    flushes = ctl.publisher.flushes - before
    # 2000 events → at most ~10 trait writes per second (each one hold_sync batch).
    assert 1 <= flushes <= int((elapsed + 0.3) * 10) + 2
    assert ctl.events >= 2000 and ctl.cpu_events >= 0.0


def test_actions_reach_the_queue(env: tuple[FakePanel, FakeQueue, DownloadsController]) -> None:
    _panel, queue, ctl = env
    for verb, item in [("pause", "a"), ("resume", "a"), ("cancel", "a"), ("retry", "a"),
                       ("pause", None), ("resume", None), ("cancel", None), ("clear", None)]:
        ctl.run(verb, item)
    wait_for(lambda: len(queue.calls) == 8)
    assert sorted(queue.calls, key=repr) == sorted(
        [("pause", "a"), ("resume", "a"), ("cancel", "a"), ("retry", "a"),
         ("pause", None), ("resume", None), ("cancel", None), ("clear", None)], key=repr)
    with pytest.raises(KeyError, match="no longer in the list"):
        ctl.run("cancel", "gone")
    with pytest.raises(ValueError, match="Unknown downloads action"):
        ctl.run("explode")


def test_mute_persists_in_settings(env: tuple[FakePanel, FakeQueue, DownloadsController], tmp_path: Path) -> None:
    from sdpanel.settings import load_settings

    panel, _queue, ctl = env
    assert panel.downloads["muted"] is False
    ctl.set_muted(True)
    ctl.publisher.flush()
    assert panel.downloads["muted"] is True
    assert load_settings(tmp_path / "store").audio_muted is True
    # A new panel (a new kernel) starts muted.
    again = DownloadsController(FakePanel(), lambda: FakeQueue())  # type: ignore[arg-type,return-value]
    again.attach()
    assert again.muted is True
    again.detach()


def test_compact_row_and_totals() -> None:
    r = compact_row(view("x", "paused", 10, None, sha256=None, error=None))
    assert r["total"] is None and r["sha"] == ""
    t = totals([r, compact_row(view("y", "active", 50, 100, speed=25.0))])
    assert (t["done"], t["total"]) == (60, 100) and t["eta"] == pytest.approx(1.6) and t["counts"] == {"paused": 1, "active": 1}


def test_panel_has_the_tab_and_routes_intents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sdpanel.panels import Panel

    class Mon:
        def sample(self) -> dict[str, Any]:
            return {}

    monkeypatch.setenv("SDPANEL_STORAGE", str(tmp_path / "store"))
    monkeypatch.setenv("SDPANEL_PLATFORM", "local")
    p = Panel(monitor=Mon(), sample_interval=0.05)
    try:
        assert "downloads" in [t["id"] for t in p.tabs]
        ctl = p._sdp_downloads  # type: ignore[attr-defined]
        fake = FakeQueue([view("a", "active")])
        ctl._queue = fake
        ctl.reload()
        wait_for(lambda: [r["id"] for r in p.downloads.get("rows", [])] == ["a"])
        p._on_msg(p, {"action": "downloads.pause", "id": "a"}, [])
        wait_for(lambda: fake.calls == [("pause", "a")])
    finally:
        p.close()
