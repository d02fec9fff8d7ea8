"""Launch the stub WebUI: readiness, models through the store's links, logs, stop, crash,
crash loop, port in use, re-attach from a fresh process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import psutil
import pytest

from sdpanel.runtime import EventBus, LogEvent, StateEvent
from sdpanel.storage import StorageRoot, link_webui
from sdpanel.webuis import (
    ProcessManager,
    WebUICrashed,
    WebUIStartTimeout,
    launch_spec,
    read_records,
)
from tests.fixtures.webui_packages import build_tree

FAST = {"STUB_WEBUI_DELAY": "0.2"}


@pytest.fixture
def store(tmp_path: Path) -> StorageRoot:
    return StorageRoot.at(tmp_path / "store").ensure()


@pytest.fixture
def manager(store: StorageRoot):
    bus = EventBus()
    events: list = []
    bus.subscribe(events.append)
    mgr = ProcessManager(store, bus, crash_window=30, restart_delay=0.1)
    mgr.events = events  # type: ignore[attr-defined]
    yield mgr
    for proc in list(mgr.procs.values()):
        if proc.pid and proc.alive():
            os.killpg(proc.pid, 9)


async def _get(url: str) -> tuple[int, object]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.json(content_type=None)


def _states(mgr: ProcessManager, name: str) -> list[str]:
    return [e.state for e in mgr.events if isinstance(e, StateEvent) and e.key == name]  # type: ignore[attr-defined]


async def test_launch_ready_models_logs_stop(tmp_path: Path, store: StorageRoot, manager: ProcessManager) -> None:
    wd = build_tree(tmp_path / "ComfyUI")
    (store.kind_dir("checkpoints") / "sdxl_base.safetensors").write_bytes(b"x" * 10)
    (store.kind_dir("loras") / "style").mkdir()
    (store.kind_dir("loras") / "style" / "ink.safetensors").write_bytes(b"y")
    report = link_webui(store, wd, "comfyui")
    assert report.ok, report.summary()
    spec = launch_spec("comfyui", wd, python=sys.executable, port=0, gpu=1, env=FAST)
    proc = await manager.start(spec)
    assert proc.state == "ready" and proc.port
    status, stats = await _get(f"{proc.url}/system_stats")
    assert status == 200 and stats["devices"][0]["cuda_visible_devices"] == "1"  # type: ignore[index]
    _, ckpts = await _get(f"{proc.url}/models/checkpoints")
    _, loras = await _get(f"{proc.url}/models/loras")
    assert "sdxl_base.safetensors" in ckpts  # type: ignore[operator]
    assert "style/ink.safetensors" in loras  # type: ignore[operator]
    # record for re-attach and `sdpanel ps`
    rec = json.loads(manager.pid_path("comfyui").read_text())
    assert rec["pid"] == proc.pid and rec["port"] == proc.port and rec["kind"] == "webui"
    assert [r["alive"] for r in read_records(store)] == [True]
    # logs: file and tail, and LogEvents on the bus
    time.sleep(0.5)
    proc.read_new_log()
    assert any("To see the GUI go to" in line for line in proc.tail())
    assert "To see the GUI go to" in Path(rec["log"]).read_text()
    assert any(isinstance(e, LogEvent) and "To see the GUI" in e.message for e in manager.events)  # type: ignore[attr-defined]
    pid = proc.pid
    assert await manager.stop("comfyui", timeout=5)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not manager.pid_path("comfyui").exists()
    assert _states(manager, "comfyui") == ["starting", "ready", "stopped"]


async def test_a1111_flavour_lists_linked_checkpoints(tmp_path: Path, store: StorageRoot,
                                                      manager: ProcessManager) -> None:
    wd = build_tree(tmp_path / "forge", flavour="a1111")
    (store.kind_dir("checkpoints") / "flux.safetensors").write_bytes(b"x")
    link_webui(store, wd, "forge")
    proc = await manager.start(launch_spec("forge", wd, python=sys.executable, port=0, env=FAST))
    _, models = await _get(f"{proc.url}/sdapi/v1/sd-models")
    assert [m["title"] for m in models] == ["flux.safetensors"]  # type: ignore[union-attr]
    assert "--api" in json.loads(manager.pid_path("forge").read_text())["cmdline"]
    await manager.stop("forge")


async def test_port_in_use_takes_next_free(tmp_path: Path, manager: ProcessManager) -> None:
    wd = build_tree(tmp_path / "ComfyUI")
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    try:
        proc = await manager.start(launch_spec("comfyui", wd, python=sys.executable, port=taken, env=FAST))
        assert proc.port != taken and proc.port > taken
        assert (await _get(f"{proc.url}/system_stats"))[0] == 200
    finally:
        blocker.close()
        await manager.stop("comfyui")


async def test_foreign_listener_on_our_port_is_not_ready(tmp_path: Path, manager: ProcessManager,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Another program takes the port between our pick and the probe: its answer must not
    make our WebUI look ready; ours cannot bind, and that shows as a crash."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Foreign(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # answers every probe with 200
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            return None

    foreign = ThreadingHTTPServer(("127.0.0.1", 0), Foreign)
    threading.Thread(target=foreign.serve_forever, daemon=True).start()
    taken = foreign.server_address[1]
    import sdpanel.webuis._process as process_mod
    monkeypatch.setattr(process_mod, "free_port", lambda preferred=0, tries=100: taken)
    wd = build_tree(tmp_path / "ComfyUI")
    try:
        with pytest.raises(WebUICrashed):
            await manager.start(launch_spec("comfyui", wd, python=sys.executable, port=taken, env=FAST), auto_restart=False)
        assert "ready" not in _states(manager, "comfyui")
    finally:
        foreign.shutdown()


async def test_crash_detected_with_exit_code_and_log(tmp_path: Path, manager: ProcessManager) -> None:
    wd = build_tree(tmp_path / "ComfyUI")
    spec = launch_spec("comfyui", wd, python=sys.executable, port=0, env={**FAST, "STUB_WEBUI_CRASH": "1"})
    with pytest.raises(WebUICrashed) as info:
        await manager.start(spec, auto_restart=False)
    err = info.value
    assert err.exit_code == 3
    assert "exited with code 3" in str(err) and "stub crash requested" in str(err)
    assert _states(manager, "comfyui") == ["starting", "crashed"]
    assert not manager.pid_path("comfyui").exists()


async def test_crash_loop_stops_after_three_tries(tmp_path: Path, manager: ProcessManager) -> None:
    wd = build_tree(tmp_path / "ComfyUI")
    spec = launch_spec("comfyui", wd, python=sys.executable, port=0, env={**FAST, "STUB_WEBUI_CRASH": "1"})
    with pytest.raises(WebUICrashed, match="crashed 3 times") as info:
        await manager.start(spec)
    assert info.value.loop
    states = _states(manager, "comfyui")
    assert states.count("starting") == 3 and states[-1] == "crashed"
    log = manager.log_path("comfyui").read_text()
    assert log.count("--- sdpanel: starting comfyui") == 3


async def test_crash_after_ready_is_restarted(tmp_path: Path, manager: ProcessManager) -> None:
    wd = build_tree(tmp_path / "ComfyUI")
    proc = await manager.start(launch_spec("comfyui", wd, python=sys.executable, port=0, env=FAST))
    first = proc.pid
    os.killpg(first, 9)  # the WebUI dies under the user
    for _ in range(100):
        if proc.state == "ready" and proc.pid != first:
            break
        await __import__("asyncio").sleep(0.1)
    assert proc.pid != first and proc.state == "ready"
    assert "crashed" in _states(manager, "comfyui")
    await manager.stop("comfyui")


async def test_hang_times_out_and_is_stopped(tmp_path: Path, manager: ProcessManager) -> None:
    wd = build_tree(tmp_path / "ComfyUI")
    spec = launch_spec("comfyui", wd, python=sys.executable, port=0, env={**FAST, "STUB_WEBUI_HANG": "1"}, ready_timeout=3)
    with pytest.raises(WebUIStartTimeout, match="did not answer /system_stats"):
        await manager.start(spec)
    proc = manager.procs["comfyui"]
    assert not proc.alive()


async def test_reattach_from_fresh_process(tmp_path: Path, store: StorageRoot, manager: ProcessManager) -> None:
    wd = build_tree(tmp_path / "ComfyUI")
    proc = await manager.start(launch_spec("comfyui", wd, python=sys.executable, port=0, env=FAST))
    # A new kernel: a separate Python process re-attaches, reads the tail, stops it.
    script = textwrap.dedent(f"""
        import asyncio, json
        from sdpanel.storage import StorageRoot
        from sdpanel.webuis import ProcessManager
        async def main():
            m = ProcessManager(StorageRoot.at({str(store.path)!r}))
            p = await m.attach("comfyui")
            out = {{"state": p.state, "pid": p.pid, "port": p.port,
                    "tail": any("To see the GUI" in l for l in p.tail(100))}}
            out["stopped"] = await m.stop("comfyui", timeout=5)
            print(json.dumps(out))
        asyncio.run(main())
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out == {"state": "ready", "pid": proc.pid, "port": proc.port, "tail": True, "stopped": True}
    for _ in range(50):
        if not proc.alive():
            break
        await __import__("asyncio").sleep(0.1)
    assert not proc.alive()
    await __import__("asyncio").sleep(0.6)
    assert proc.state == "stopped" and not proc.alive()  # not taken for a crash, not restarted
    # a stale record (process gone) is not adopted and is cleaned up
    manager.pid_path("comfyui").write_text(json.dumps({"pid": proc.pid, "port": 1, "started": 0,
                                                       "cmdline": ["nope"], "name": "comfyui"}))
    assert await ProcessManager(store).attach("comfyui") is None
    assert not manager.pid_path("comfyui").exists()


async def test_start_without_wait_then_ready(tmp_path: Path, manager: ProcessManager) -> None:
    import asyncio

    wd = build_tree(tmp_path / "ComfyUI")
    proc = await manager.start(launch_spec("comfyui", wd, python=sys.executable, port=0, env={"STUB_WEBUI_DELAY": "1"}), wait=False)
    assert proc.state == "starting" and proc.pid and proc.port  # known at once for tunnels/links
    for _ in range(100):
        if proc.state == "ready":
            break
        await asyncio.sleep(0.1)
    assert proc.state == "ready"
    await manager.stop("comfyui")
