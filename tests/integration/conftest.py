"""Fixtures shared by integration tests."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sdpanel.downloads import DownloadQueue
from sdpanel.runtime import EventBus


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
