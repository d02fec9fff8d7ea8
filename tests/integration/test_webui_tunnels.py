"""Public URLs only behind a login: stub tunnel tools print the line each real tool prints
and forward traffic; without credentials the request is refused, with them it reaches the
stub WebUI over HTTP and WebSocket."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import aiohttp
import psutil
import pytest

from sdpanel.runtime import EventBus
from sdpanel.storage import StorageRoot
from sdpanel.webuis._proxy import AuthProxy
from sdpanel.webuis._tunnels import TunnelError, jupyter_proxy_url, open_tunnel
from tests.fixtures.stub_tunnels import stub_webui_and_tools

DOMAINS = {"cloudflared": r"https://[0-9a-f]+-words-here\.trycloudflare\.com",
           "ngrok": r"https://[0-9a-f]+-1-2-3-4\.ngrok-free\.app",
           "zrok": r"https://[0-9a-f]+\.share\.zrok\.io",
           "localtunnel": r"https://[0-9a-f]+-cat-12\.loca\.lt",
           "pinggy": r"https://[0-9a-f]+\.a\.free\.pinggy\.link"}


@pytest.fixture
def store(tmp_path: Path) -> StorageRoot:
    return StorageRoot.at(tmp_path / "store").ensure()


@pytest.fixture
async def webui(tmp_path: Path, store: StorageRoot, monkeypatch: pytest.MonkeyPatch):
    async with stub_webui_and_tools(tmp_path, store, monkeypatch) as proc:
        yield proc


def _basic(password: str, user: str = "sdpanel") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def _wait_forward(log: Path, old: str | None = None) -> str:
    import asyncio

    for _ in range(100):
        found = re.findall(r"STUB-FORWARD (http://\S+)", log.read_text())
        if found and found[-1] != old:
            return found[-1]
        await asyncio.sleep(0.1)
    raise AssertionError("no forward line")


@pytest.mark.parametrize("tool", list(DOMAINS))
async def test_public_url_needs_login(tool: str, webui, store: StorageRoot) -> None:
    tunnel = await open_tunnel(tool, webui.port, storage=store, name="comfyui", bus=EventBus())
    try:
        assert re.fullmatch(DOMAINS[tool], tunnel.url), tunnel.url
        assert tunnel.password and tunnel.user == "sdpanel"
        assert tunnel.auth == ("own" if tool == "ngrok" else "proxy")
        public = await _wait_forward(tunnel.log_path)  # type: ignore[arg-type]
        # a new connection per request: the ngrok stub checks auth once per connection
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            async with s.get(f"{public}/system_stats") as r:
                assert r.status == 401
            async with s.get(f"{public}/system_stats", headers=_basic("wrong")) as r:
                assert r.status == 401
            creds = _basic(tunnel.password)
            async with s.get(f"{public}/system_stats", headers=creds) as r:
                assert r.status == 200 and (await r.json())["system"]["comfyui_version"] == "stub"
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await s.ws_connect(f"{public}/ws?clientId=a")
            async with s.ws_connect(f"{public}/ws?clientId=abc", headers=creds) as ws:
                first = await ws.receive_json(timeout=5)
                assert first["type"] == "status" and first["data"]["sid"] == "abc"
                await ws.send_str("hello through the tunnel")
                assert await ws.receive_str(timeout=5) == "hello through the tunnel"
        # the password never shows up in logs or on any command line
        logs = "".join(p.read_text() for p in (store.state_dir / "logs").glob("*.log"))
        assert tunnel.password not in logs
        for p in (tunnel.proc, tunnel.proxy):
            if p is not None:
                assert tunnel.password not in " ".join(psutil.Process(p.pid).cmdline())
    finally:
        await tunnel.stop()
    assert tunnel.proc is not None and tunnel.proc.poll() is not None
    assert not list((store.state_dir / "tunnels").glob("*.yml"))


async def test_proxy_cookie_login_and_no_password_refused(webui) -> None:
    with pytest.raises(ValueError, match="without a login"):
        AuthProxy(webui.port, "")
    proxy = AuthProxy(webui.port, "s3cret-pass-123")
    port = await proxy.start()
    try:
        # (unsafe=True: aiohttp's jar ignores cookies from IP hosts unless told otherwise)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            async with s.get(f"http://127.0.0.1:{port}/", headers=_basic("s3cret-pass-123")) as r:
                assert r.status == 200 and "stub comfyui" in await r.text()
                assert "HttpOnly" in r.headers["Set-Cookie"]
            # the cookie set by that login is enough afterwards (browsers' fetch/WebSocket)
            async with s.get(f"http://127.0.0.1:{port}/models/checkpoints") as r:
                assert r.status == 200
        async with aiohttp.ClientSession() as fresh, fresh.get(f"http://127.0.0.1:{port}/") as r:
            assert r.status == 401 and "Basic" in r.headers["WWW-Authenticate"]
    finally:
        await proxy.stop()


async def test_tunnel_restarted_when_it_drops(webui, store: StorageRoot, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_TUNNEL_DIE_ONCE", str(tmp_path / "died"))
    tunnel = await open_tunnel("cloudflared", webui.port, storage=store, name="comfyui",
                               watch_interval=0.2)
    first_url = tunnel.url
    try:
        import asyncio

        for _ in range(100):
            if tunnel.restarts == 1 and tunnel.state == "ready":
                break
            await asyncio.sleep(0.1)
        assert tunnel.restarts == 1 and tunnel.state == "ready" and tunnel.url != first_url
        public = await _wait_forward(tunnel.log_path)  # type: ignore[arg-type]
        async with aiohttp.ClientSession() as s, s.get(
                f"{public}/system_stats", headers=_basic(tunnel.password)) as r:
            assert r.status == 200
    finally:
        await tunnel.stop()


async def test_missing_tool_and_unknown_tunnel(store: StorageRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TunnelError, match="`cloudflared` is not installed"):
        await open_tunnel("cloudflared", 1, storage=store)
    with pytest.raises(TunnelError, match="Unknown tunnel"):
        await open_tunnel("telnet", 1, storage=store)


def test_jupyter_proxy_url() -> None:
    assert jupyter_proxy_url("https://host/user/me/", 8188) == "https://host/user/me/proxy/8188/"
    assert jupyter_proxy_url("/", 7860) == "/proxy/7860/"
    assert subprocess  # noqa: B018
