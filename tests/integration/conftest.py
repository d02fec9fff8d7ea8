"""Fixtures shared by integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdpanel.runtime import EventBus
from sdpanel.storage import StorageRoot
from sdpanel.webuis import WebUIService
from tests.fixtures.queues import make_queue  # noqa: F401 - a fixture for this folder


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
