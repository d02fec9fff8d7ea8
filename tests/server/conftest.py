"""pytest-jupyter's server fixtures for this suite only (it ships no pytest11 entry point,
and ``pytest_plugins`` is not allowed outside the root conftest)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403


@pytest.fixture
def storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "store"
    monkeypatch.setenv("SDPANEL_STORAGE", str(root))
    monkeypatch.setenv("SDPANEL_PLATFORM", "local")
    return root


@pytest.fixture
def jp_server_config(storage: Path) -> dict[str, object]:
    # Authentication stays on: pytest-jupyter's server has a token and jp_fetch sends it.
    return {"ServerApp": {"jpserver_extensions": {"sdpanel.server": True}}}


@pytest.fixture
def run(jp_asyncio_loop: asyncio.AbstractEventLoop) -> Callable[[Any], Any]:
    """Run a coroutine on the server's loop. The tests are plain functions: under
    pytest-asyncio's auto mode an ``async def`` test would run on another loop than
    pytest-jupyter's server and its requests would never be answered."""
    return jp_asyncio_loop.run_until_complete
