"""No aria2c daemon is left behind by a one-shot run that re-attached to it: a CLI run
killed mid-download leaves its daemon (so the next run resumes); the next run that
finishes the download stops it — unless a live kernel started it or still uses it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from sdpanel.downloads import Aria2Daemon, DownloadQueue, DownloadSpec
from sdpanel.runtime import EventBus
from tests.fixtures.range_server import RangeServer
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.skipif(shutil.which("aria2c") is None, reason="aria2c not installed")
REPO = Path(__file__).resolve().parents[2]


def _start_daemon_in(store: Path, *, stay: bool) -> subprocess.Popen[str]:
    """Another process starts the store's daemon; it exits at once (a killed CLI run) or
    stays connected until its stdin closes (a live kernel)."""
    code = textwrap.dedent(f"""
        import asyncio, sys
        from sdpanel.downloads import Aria2Daemon
        async def main():
            d = Aria2Daemon({str(store)!r})
            await d.ensure()
            print("READY", d.pid, flush=True)
            if {stay!r}:
                await asyncio.to_thread(sys.stdin.read)
            await d.close()
        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("READY"), line
    return proc


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def _one_shot_download(store: Path, server: RangeServer) -> tuple[int, str]:
    server.add_file("f.bin", os.urandom(200_000))
    q = DownloadQueue(store, EventBus(), engine="aria2")
    try:
        [iid] = await q.add(DownloadSpec(server.url("f.bin"), folder="out"))
        await q.wait_all(timeout=60)
        state = q.item(iid)["state"]
        pid = q._attempts.engine("aria2").daemon.pid  # type: ignore[attr-defined]
    finally:
        await q.close(stop_idle_daemon=True)  # what `sdpanel download` does at the end
    return pid, state


async def test_reattached_daemon_of_a_dead_run_is_stopped(tmp_path: Path) -> None:
    store = tmp_path / "store"
    starter = _start_daemon_in(store, stay=False)
    starter.wait(30)
    with RangeServer() as server:
        pid, state = await _one_shot_download(store, server)
    assert state == "done"
    # (a SIGKILL after the grace period lands a moment later; zombies of a reparented
    # daemon count as gone: nothing runs)
    wait_for(lambda: not _running(pid), timeout=10, what="the aria2c daemon to be stopped")


async def test_a_live_kernels_daemon_stays(tmp_path: Path) -> None:
    store = tmp_path / "store"
    kernel = _start_daemon_in(store, stay=True)
    try:
        with RangeServer() as server:
            pid, state = await _one_shot_download(store, server)
        assert state == "done"
        assert _running(pid), "a kernel's daemon must outlive a CLI run"
    finally:
        assert kernel.stdin is not None
        kernel.stdin.close()
        kernel.wait(30)
        await Aria2Daemon(store).shutdown(grace=0.2)


async def test_a_daemon_another_process_still_uses_stays(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _start_daemon_in(store, stay=False).wait(30)
    user = _start_daemon_in(store, stay=True)  # re-attaches and keeps its RPC connection
    try:
        with RangeServer() as server:
            pid, state = await _one_shot_download(store, server)
        assert state == "done" and _running(pid), "stopped a daemon another process is connected to"
    finally:
        assert user.stdin is not None
        user.stdin.close()
        user.wait(30)
        await Aria2Daemon(store).shutdown(grace=0.2)
