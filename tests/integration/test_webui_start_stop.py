"""Issue 12 items 4 and 5 with the stub WebUI (the real ComfyUI tier repeats them on the
real server): a deterministic start failure said once with its cause, `stop` that returns
only when the port is free, the port kept across TIME_WAIT. The CLI's side (`launch`
without --wait, `--args "--lowvram"`, whole errors) is in test_webui_cli.py."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import aiohttp
import psutil
import pytest

from sdpanel.runtime import EventBus
from sdpanel.storage import StorageRoot
from sdpanel.webuis import ProcessManager, WebUICrashed, launch_spec
from sdpanel.webuis._process import port_free
from tests.fixtures.webui_packages import build_tree

ROOT = Path(__file__).resolve().parents[2]
FAST = {"STUB_WEBUI_DELAY": "0.2"}


@pytest.fixture
def manager(tmp_path: Path):
    mgr = ProcessManager(StorageRoot.at(tmp_path / "store").ensure(), EventBus(), restart_delay=0.1)
    yield mgr
    for proc in list(mgr.procs.values()):
        if proc.pid and proc.alive():
            os.killpg(proc.pid, 9)


def _listening(port: int) -> bool:
    return not port_free(port)


async def test_missing_module_is_said_once_with_its_fix(tmp_path: Path, manager: ProcessManager) -> None:
    wd = build_tree(tmp_path / "ComfyUI")
    spec = launch_spec("comfyui", wd, python=sys.executable, port=0,
                       env={**FAST, "STUB_WEBUI_IMPORT": "sdpanel_missing_mod"})
    with pytest.raises(WebUICrashed) as info:
        await manager.start(spec)
    msg = str(info.value)
    assert "cannot start" in msg and "lacks the module 'sdpanel_missing_mod'" in msg
    assert "webui_python" in msg and "ModuleNotFoundError" in msg  # the cause and its log line
    starts = manager.log_path("comfyui").read_text().count("--- sdpanel: starting comfyui")
    assert starts == 1  # not retried: it fails the same way every time


async def test_stop_returns_once_the_port_is_free(tmp_path: Path, manager: ProcessManager) -> None:
    wd = build_tree(tmp_path / "ComfyUI")
    spec = launch_spec("comfyui", wd, python=sys.executable, port=0, env={**FAST, "STUB_WEBUI_SLOW_EXIT": "1.5"})
    proc = await manager.start(spec)
    port, pid = proc.port, proc.pid
    assert port and pid and _listening(port)
    # Stopped from another process (`sdpanel stop`), which sees the pid only through psutil.
    other = ProcessManager(manager.storage, EventBus())
    assert await other.stop("comfyui")
    # The main thread ended at once; stop waited for the thread that still held the port.
    assert not _listening(port)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_relaunch_gets_the_same_port_despite_time_wait(tmp_path: Path, manager: ProcessManager) -> None:
    wd = build_tree(tmp_path / "ComfyUI")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = launch_spec("comfyui", wd, python=sys.executable, port=port, env=FAST)
    proc = await manager.start(spec)
    assert proc.port == port
    async with aiohttp.ClientSession() as session:  # keep-alive: the server closes first
        for _ in range(3):
            async with session.get(f"{proc.url}/system_stats") as r:
                assert r.status == 200
        await manager.stop("comfyui")
    again = await manager.start(spec)
    assert again.port == port
    await manager.stop("comfyui")
