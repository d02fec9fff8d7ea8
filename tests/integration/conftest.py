"""Fixtures shared by integration tests."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sdpanel.downloads import DownloadQueue
from sdpanel.runtime import EventBus
from sdpanel.storage import StorageRoot
from sdpanel.webuis import WebUIService


@pytest.fixture
async def svc(tmp_path: Path):
    """A WebUI service on a fresh store; ``svc.events`` records every bus event. WebUIs it
    started are stopped afterwards."""
    bus = EventBus()
    events: list = []
    bus.subscribe(events.append)
    service = WebUIService(StorageRoot.at(tmp_path / "store"), bus, webuis_dir=tmp_path / "webuis")
    service.events = events  # type: ignore[attr-defined]
    yield service
    for name in list(service.manager.procs):
        await service.stop(name)


@pytest.fixture
async def make_queue(tmp_path: Path) -> AsyncIterator[Any]:
    """``make_queue(**kw)`` → a DownloadQueue on ``tmp_path/store`` (fast retries); all are
    closed, and an aria2c daemon they started is stopped, at the end of the test."""
    qs: list[DownloadQueue] = []

    def make(**kw: Any) -> DownloadQueue:
        q = DownloadQueue(tmp_path / "store", EventBus(), **{"retry_backoff": 0.05, **kw})
        qs.append(q)
        return q

    yield make
    for q in qs:
        await q.close()
    if shutil.which("aria2c"):
        from sdpanel.downloads import Aria2Daemon

        await Aria2Daemon(tmp_path / "store").shutdown(grace=0.2)
