"""Every child sdpanel starts gets an allow-listed environment: the planted tokens
(tests/conftest.py) must not be in ``/proc/<pid>/environ`` of the real processes — the
WebUI, the login proxy, each tunnel tool, aria2c and install steps — and the proxy's
password is in neither its environment nor its command line."""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sdpanel._childenv import child_env
from sdpanel.downloads import Aria2Daemon
from sdpanel.runtime import EventBus
from sdpanel.storage import StorageRoot
from sdpanel.webuis._git import StepLog
from sdpanel.webuis._tunnels import open_tunnel
from tests.fixtures.stub_tunnels import stub_webui_and_tools


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(e.decode(errors="replace").partition("=")[::2] for e in raw.split(b"\0") if e)


def _leaked(env: dict[str, str], planted: dict[str, str], allowed: tuple[str, ...] = ()) -> list[str]:
    """Names of planted secrets found in ``env`` (by name or by value); never the values."""
    blob = "\0".join(f"{k}={v}" for k, v in env.items())
    return [var for var, value in planted.items() if var not in allowed and (var in env or value in blob)]


@pytest.fixture
def store(tmp_path: Path) -> StorageRoot:
    return StorageRoot.at(tmp_path / "store").ensure()


@pytest.fixture
async def webui(tmp_path: Path, store: StorageRoot, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[object]:
    async with stub_webui_and_tools(tmp_path, store, monkeypatch) as proc:
        yield proc


def test_allow_list_keeps_what_programs_need_and_drops_secrets() -> None:
    base = {"PATH": "/bin", "HOME": "/h", "LANG": "C.UTF-8", "LC_ALL": "C", "CUDA_VISIBLE_DEVICES": "0",
            "HF_TOKEN": "x", "CIVITAI_TOKEN": "x", "AWS_SECRET_ACCESS_KEY": "x", "MY_PASSWORD": "x",
            "JUPYTER_TOKEN": "x", "RANDOM_APP_SETTING": "x", "SDPANEL_CHILD_ENV": "RANDOM_*,GH_TOKEN",
            "GH_TOKEN": "x"}
    env = child_env({"EXTRA": "1"}, base=base)
    assert env == {"PATH": "/bin", "HOME": "/h", "LANG": "C.UTF-8", "LC_ALL": "C",
                   "CUDA_VISIBLE_DEVICES": "0", "RANDOM_APP_SETTING": "x", "EXTRA": "1"}


async def test_webui_proxy_and_tunnel_tools_get_no_tokens(webui, store: StorageRoot,  # type: ignore[no-untyped-def]
                                                          planted_tokens: dict[str, str]) -> None:
    env = _environ(webui.pid)
    assert "PATH" in env and env.get("STUB_WEBUI_DELAY") == "0.1", "what the WebUI needs still arrives"
    assert _leaked(env, planted_tokens) == [], "WebUI"
    for tool, own in (("cloudflared", ()), ("zrok", ("ZROK_TOKEN",)), ("ngrok", ())):
        tunnel = await open_tunnel(tool, webui.port, storage=store, name="comfyui", bus=EventBus())
        try:
            assert tunnel.proc is not None
            assert _leaked(_environ(tunnel.proc.pid), planted_tokens, own) == [], tool
            if own:  # the tool's own token reaches it, and only it
                assert _environ(tunnel.proc.pid).get(own[0]) == planted_tokens[own[0]]
            if tunnel.proxy is not None:
                proxy_env = _environ(tunnel.proxy.pid)
                assert _leaked(proxy_env, planted_tokens) == [], f"{tool} login proxy"
                assert not [k for k in proxy_env if "PASSWORD" in k]
                assert tunnel.password not in "\0".join(proxy_env.values())
                cmdline = Path(f"/proc/{tunnel.proxy.pid}/cmdline").read_bytes().decode()
                assert tunnel.password not in cmdline
        finally:
            await tunnel.stop()


@pytest.mark.skipif(shutil.which("aria2c") is None, reason="aria2c not installed")
async def test_aria2c_gets_no_tokens(tmp_path: Path, planted_tokens: dict[str, str]) -> None:
    daemon = Aria2Daemon(tmp_path / "store")
    try:
        await daemon.ensure()
        assert daemon.pid is not None
        assert _leaked(_environ(daemon.pid), planted_tokens) == []
    finally:
        await daemon.shutdown(grace=0.2)


async def test_install_steps_get_no_tokens(tmp_path: Path, planted_tokens: dict[str, str]) -> None:
    """git and pip run through StepLog.run: the step prints its own environment's names."""
    log = StepLog(tmp_path / "install.log", None, "webui:test")
    lines = await log.run("env", [sys.executable, "-c",
                                  "import os; print('\\n'.join(sorted(os.environ)))"])
    names = set(lines)
    assert "PATH" in names and "GIT_TERMINAL_PROMPT" in names
    assert sorted(set(planted_tokens) & names) == []
