"""Issue 12 items 2, 4, 5, 7 with the stub WebUI (the real ComfyUI tier repeats the ones a
real server shows): a deterministic start failure said once with its cause, `stop` that
returns only when the port is free, the port kept across TIME_WAIT, the CLI's
`launch` without --wait leaving the WebUI running, `--args "--lowvram"`, whole errors."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil
import pytest

from sdpanel.runtime import EventBus
from sdpanel.storage import StorageRoot
from sdpanel.webuis import ProcessManager, WebUICrashed, launch_spec
from tests.fixtures.range_server import RangeServer
from tests.fixtures.waiting import wait_for
from tests.fixtures.webui_packages import build_tree, make_tar

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
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


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


@pytest.fixture
def cli(tmp_path: Path):
    env = {**os.environ, "SDPANEL_WEBUIS_DIR": str(tmp_path / "webuis"), **FAST}
    store = str(tmp_path / "store")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "sdpanel", *args, "--storage", store], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=120)
        if check:
            assert res.returncode == 0, res.stdout + res.stderr
        return res

    yield run
    run("stop", "comfyui", check=False)


def test_cli_launch_without_wait_leaves_it_running(cli, tmp_path: Path) -> None:
    pkg = make_tar(build_tree(tmp_path / "tree"), tmp_path / "ComfyUI.tar.zst")
    with RangeServer() as srv:
        srv.add_file(pkg.name, pkg)
        cli("install", "comfyui", "--from", srv.url(pkg.name), "--no-extensions")
    out = cli("launch", "comfyui", "--args", "--lowvram").stdout  # no --wait; a dash value
    assert "comfyui: starting" in out

    def running() -> list[dict[str, object]]:
        return [p for p in json.loads(cli("ps", "--json").stdout) if p["alive"]]

    wait_for(lambda: running(), timeout=30, what="the WebUI still running after `launch` returned")
    rec = running()[0]
    assert "--lowvram" in rec["cmdline"]  # type: ignore[operator]

    async def answers() -> int:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{rec['port']}/system_stats") as r:
            return r.status

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if asyncio.run(answers()) == 200:
                break
        except aiohttp.ClientError:
            time.sleep(0.2)
    assert asyncio.run(answers()) == 200
    assert "stopped" in cli("stop", "comfyui").stdout


def test_cli_prints_the_whole_multi_line_error(cli, tmp_path: Path) -> None:
    pkg = make_tar(build_tree(tmp_path / "tree"), tmp_path / "ComfyUI.tar.zst")
    with RangeServer() as srv:
        srv.add_file(pkg.name, pkg)
        cli("install", "comfyui", "--from", srv.url(pkg.name), "--no-extensions")
    os.environ["STUB_WEBUI_IMPORT"] = "sdpanel_missing_mod"
    try:
        res = subprocess.run([sys.executable, "-m", "sdpanel", "launch", "comfyui", "--wait", "--storage",
                              str(tmp_path / "store")], cwd=ROOT, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "SDPANEL_WEBUIS_DIR": str(tmp_path / "webuis"), **FAST})
    finally:
        del os.environ["STUB_WEBUI_IMPORT"]
    assert res.returncode == 1
    err = res.stderr
    assert err.startswith("error: comfyui cannot start") and "Last log lines:" in err
    # the lines after "Last log lines:" are there, with the traceback's last line
    assert "ModuleNotFoundError: No module named 'sdpanel_missing_mod'" in err
