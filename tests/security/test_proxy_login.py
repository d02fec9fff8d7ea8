"""The tunnel login proxy in front of a WebUI, probed as an attacker and a browser would.

The WebUI behind it is a stand-in carrying ComfyUI's real ``origin_only_middleware`` (read
from the ComfyUI source at test time, ``tests/fixtures/comfy_origin.py``)."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sdpanel.webuis._proxy import COOKIE, AuthProxy
from sdpanel.webuis._proxy_auth import FREE_FAILURES, LoginThrottle, Sessions
from sdpanel.webuis._tunnels import _killpg, _start_proxy
from tests.fixtures.comfy_origin import comfy_sources, origin_checked_app, post_prompt_through_proxy

PASSWORD = "correct-horse-battery"
TUNNEL_HOST = "abc-words-here.trycloudflare.com"
needs_comfy = pytest.mark.skipif(comfy_sources() is None, reason="ComfyUI sources not available")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def comfy() -> AsyncIterator[int]:
    if comfy_sources() is None:  # a checkout without ../shared beside it
        pytest.skip("ComfyUI sources not available (set SDPANEL_WEBUI_SOURCES)")
    runner = web.AppRunner(origin_checked_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await runner.cleanup()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def proxy(comfy: int, clock: Clock) -> AsyncIterator[AuthProxy]:
    p = AuthProxy(comfy, PASSWORD, sessions=Sessions(ttl_s=3600, clock=clock),
                  throttle=LoginThrottle(clock=clock))
    await p.start()
    yield p
    await p.stop()


def _basic(user: str | bytes, password: str | bytes) -> str:
    raw = (user if isinstance(user, bytes) else user.encode()) + b":" + \
        (password if isinstance(password, bytes) else password.encode())
    return "Basic " + base64.b64encode(raw).decode()


@needs_comfy
async def test_post_prompt_through_a_tunnel_host_passes_comfyuis_origin_check(proxy: AuthProxy,
                                                                             comfy: int) -> None:
    # Without the proxy forwarding Host, ComfyUI sees Host 127.0.0.1 vs Origin https://<tunnel>.
    async with aiohttp.ClientSession() as s, s.post(
            f"http://127.0.0.1:{comfy}/prompt", json={"prompt": {}},
            headers={"Origin": f"https://{TUNNEL_HOST}"}) as r:
        assert r.status == 403, "the stand-in must refuse like ComfyUI does"
    assert await post_prompt_through_proxy(proxy.port, PASSWORD, TUNNEL_HOST) == 200


@needs_comfy
async def test_local_browser_on_the_proxy_port_passes_too(proxy: AuthProxy) -> None:
    assert await post_prompt_through_proxy(proxy.port, PASSWORD, f"127.0.0.1:{proxy.port}") == 200


@pytest.mark.parametrize("user, password", [
    ("sdpanel", "pässwörd"), ("ユーザー", PASSWORD), (b"sdpanel", b"\xff\xfe\x80"), ("sdpanel", "")])
async def test_non_ascii_or_broken_credentials_get_401_without_a_traceback(
        proxy: AuthProxy, user: str | bytes, password: str | bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with aiohttp.ClientSession() as s:
        for header in (_basic(user, password), "Basic %%%not-base64", "Basic " + base64.b64encode(b"nocolon").decode()):
            async with s.get(f"http://127.0.0.1:{proxy.port}/", headers={"Authorization": header}) as r:
                assert r.status == 401, header
        async with s.get(f"http://127.0.0.1:{proxy.port}/", cookies={COOKIE: "café"}) as r:
            assert r.status == 401
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.exc_info]


async def test_wrong_passwords_are_throttled_per_client_with_a_clear_message(proxy: AuthProxy,
                                                                            clock: Clock) -> None:
    url = f"http://127.0.0.1:{proxy.port}/"
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    async with aiohttp.ClientSession() as s:
        statuses = []
        for i in range(FREE_FAILURES + 3):
            async with s.get(url, headers={**attacker, "Authorization": _basic("sdpanel", f"guess{i}")}) as r:
                statuses.append(r.status)
                last = (r.headers.get("Retry-After"), await r.text())
        assert statuses[:FREE_FAILURES + 1] == [401] * (FREE_FAILURES + 1) and statuses[-1] == 429
        assert last[0] and "Too many wrong passwords: wait" in last[1]
        # locked out: even the right password is not checked for that client...
        async with s.get(url, headers={**attacker, "Authorization": _basic("sdpanel", PASSWORD)}) as r:
            assert r.status == 429
        # ...while another client logs in at once
        async with s.get(url, headers={"X-Forwarded-For": "198.51.100.7",
                                       "Authorization": _basic("sdpanel", PASSWORD)}) as r:
            assert r.status == 200
        clock.now += 3600
        async with s.get(url, headers={**attacker, "Authorization": _basic("sdpanel", PASSWORD)}) as r:
            assert r.status == 200


async def test_forged_client_addresses_still_hit_a_global_cap(proxy: AuthProxy) -> None:
    async with aiohttp.ClientSession() as s:
        statuses = []
        for i in range(200):
            async with s.get(f"http://127.0.0.1:{proxy.port}/", headers={
                    "X-Forwarded-For": f"10.0.{i // 250}.{i % 250}", "Authorization": _basic("sdpanel", "x")}) as r:
                statuses.append(r.status)
    assert 429 in statuses and statuses.count(401) <= 60


async def test_session_cookie_rotates_expires_and_is_secure_over_https(proxy: AuthProxy,
                                                                      clock: Clock) -> None:
    url = f"http://127.0.0.1:{proxy.port}/"
    login = {"Authorization": _basic("sdpanel", PASSWORD), "X-Forwarded-Proto": "https"}
    async with aiohttp.ClientSession() as s:
        cookies = []
        for _ in range(2):
            async with s.get(url, headers=login) as r:
                assert r.status == 200
                morsel = r.cookies[COOKIE]
                cookies.append(morsel.value)
        assert cookies[0] != cookies[1], "each login mints a new session"
        assert morsel["secure"] and morsel["httponly"] and morsel["samesite"] == "Lax"
        assert int(morsel["max-age"]) > 0
        async with s.get(url, cookies={COOKIE: cookies[0]}) as r:
            assert r.status == 200 and COOKIE not in r.cookies  # a live session needs no new cookie
        async with s.get(url, headers={"Authorization": _basic("sdpanel", PASSWORD)}) as r:
            assert not r.cookies[COOKIE]["secure"]  # plain http (local): a Secure cookie would be dropped
        clock.now += 3601
        async with s.get(url, cookies={COOKIE: cookies[0]}) as r:
            assert r.status == 401, "an expired session no longer logs in"


@needs_comfy
async def test_websocket_only_from_the_proxys_own_origin(proxy: AuthProxy) -> None:
    url = f"http://127.0.0.1:{proxy.port}/ws"
    auth = {"Authorization": _basic("sdpanel", PASSWORD)}
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(url, headers={**auth, "Origin": "https://evil.example"})
        assert refused.value.status == 403
        for origin, host in ((f"http://127.0.0.1:{proxy.port}", None), (f"https://{TUNNEL_HOST}", TUNNEL_HOST)):
            headers = {**auth, "Origin": origin, **({"Host": host} if host else {})}
            async with s.ws_connect(url, headers=headers) as ws:
                assert (await ws.receive_json())["type"] == "status"


async def test_detached_proxy_logs_no_tracebacks_for_hostile_logins(comfy: int, tmp_path: Path) -> None:
    """The proxy as tunnels run it (its own process, password through a pipe): hundreds of
    non-ASCII guesses leave its log without a traceback (it used to grow by MBs)."""
    log = tmp_path / "proxy.log"
    proc, port = await _start_proxy(comfy, PASSWORD, log)
    try:
        async with aiohttp.ClientSession() as s:
            for i in range(300):
                async with s.get(f"http://127.0.0.1:{port}/", headers={
                        "X-Forwarded-For": f"10.1.{i // 200}.{i % 200}",
                        "Authorization": _basic("sdpanel", f"пароль{i}")}) as r:
                    assert r.status in (401, 429)
            async with s.get(f"http://127.0.0.1:{port}/", headers={"Authorization": _basic("sdpanel", PASSWORD),
                                                                  "X-Forwarded-For": "192.0.2.1"}) as r:
                assert r.status in (200, 429)  # the global cap may still hold after 300 guesses
    finally:
        _killpg(proc)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and len(text) < 10_000, text[-2000:]
