"""`sdpanel install|launch|ps|logs|stop` end to end in fresh processes, as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil
import pytest

from tests.fixtures.range_server import RangeServer
from tests.fixtures.stub_tunnels import install_stub_tools
from tests.fixtures.waiting import wait_for
from tests.fixtures.webui_packages import build_tree, make_tar, stub_repo

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(tmp_path: Path):
    env = {**os.environ, "SDPANEL_WEBUIS_DIR": str(tmp_path / "webuis"), "STUB_WEBUI_DELAY": "0.2",
           "PATH": f"{install_stub_tools(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}"}
    store = str(tmp_path / "store")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "sdpanel", *args, "--storage", store], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=120)
        if check:
            assert res.returncode == 0, res.stdout + res.stderr
        return res

    yield run
    run("stop", "comfyui", check=False)


async def test_cli_install_launch_ps_logs_stop(cli, tmp_path: Path) -> None:
    pkg = make_tar(build_tree(tmp_path / "tree", venv=True), tmp_path / "ComfyUI.tar.zst")
    with RangeServer() as srv:
        srv.add_file(pkg.name, pkg)
        out = cli("install", "comfyui", "--from", srv.url(pkg.name), "--no-extensions").stdout
    assert f"installed comfyui at {tmp_path / 'webuis' / 'comfyui'} (package" in out
    res = cli("launch", "comfyui", "--wait", "--tunnel", "cloudflared")
    local = re.search(r"local:\s+(http://\S+)", res.stdout).group(1)  # type: ignore[union-attr]
    m = re.search(r"cloudflared: (https://\S+trycloudflare\.com)\s+\(user sdpanel, password (\S+)\)", res.stdout)
    assert m, res.stdout
    password = m.group(2)
    async with aiohttp.ClientSession() as s, s.get(f"{local}/system_stats") as r:
        assert r.status == 200
        argv = (await r.json())["system"]["argv"]
    assert "--cpu" in argv  # no GPU here: the WebUI's CPU flags
    ps = json.loads(cli("ps", "--json").stdout)
    assert [(p["name"], p["alive"]) for p in ps] == [("comfyui", True)]
    assert [(t["tool"], t["url"], t["alive"]) for t in ps[0]["tunnels"]] == [("cloudflared", m.group(1), True)]
    tunnel_pid = ps[0]["tunnels"][0]["pid"]
    assert password not in json.dumps(ps)
    logs = cli("logs", "comfyui").stdout
    assert "To see the GUI go to" in logs and password not in logs
    again = cli("launch", "comfyui", "--wait").stdout  # already running: re-attached, same port
    assert f"local:   {local}" in again
    assert "stopped" in cli("stop", "comfyui").stdout

    for _ in range(50):  # `stop` from another process also ends the tunnel it left behind
        if not psutil.pid_exists(tunnel_pid) or psutil.Process(tunnel_pid).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.1)
    assert not psutil.pid_exists(tunnel_pid) or psutil.Process(tunnel_pid).status() == psutil.STATUS_ZOMBIE
    assert json.loads(cli("ps", "--json").stdout) == []
    assert "was not running" in cli("stop", "comfyui").stdout


def test_cli_install_from_git_and_errors(cli, tmp_path: Path) -> None:
    repo, head = stub_repo(tmp_path / "repo")
    bad = cli("launch", "comfyui", check=False)
    assert bad.returncode == 1 and "is not installed" in bad.stderr and "sdpanel install comfyui" in bad.stderr
    out = cli("install", "comfyui", "--from", f"file://{repo}", "--no-extensions").stdout
    assert "(git," in out
    again = cli("install", "comfyui", "--from", f"file://{repo}", "--no-extensions", check=False)
    assert again.returncode == 1 and "--force" in again.stderr


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
                             env={**os.environ, "SDPANEL_WEBUIS_DIR": str(tmp_path / "webuis"), "STUB_WEBUI_DELAY": "0.2"})
    finally:
        del os.environ["STUB_WEBUI_IMPORT"]
    assert res.returncode == 1
    err = res.stderr
    assert err.startswith("error: comfyui cannot start") and "Last log lines:" in err
    # the lines after "Last log lines:" are there, with the traceback's last line
    assert "ModuleNotFoundError: No module named 'sdpanel_missing_mod'" in err
