"""A hostile server in front of the real aria2c daemon: a "model" link that answers a
torrent, a metalink, or a redirect to ftp:// must stay one plain HTTP file — no peer
listening on the network, no file beside the one asked for, nothing in ~/.cache/aria2,
and the ftp:// redirect refused with one sentence (as the Python engine does)."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest
from aiohttp import web

from sdpanel.downloads import Aria2Daemon, Aria2Engine, DownloadError, Transfer
from sdpanel.downloads._python_engine import PythonEngine
from tests.fixtures.counting_listener import CountingListener

pytestmark = pytest.mark.skipif(shutil.which("aria2c") is None, reason="aria2c not installed")


def _bencode(v: object) -> bytes:
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, str):
        return _bencode(v.encode())
    if isinstance(v, dict):
        return b"d" + b"".join(_bencode(k) + _bencode(x) for k, x in sorted(v.items())) + b"e"
    raise TypeError(v)


async def _peer(_r: web.Request) -> web.Response:
    return web.Response(body=b"peer!")


TORRENT = _bencode({"announce": "http://127.0.0.1:1/announce",
                    "info": {"name": "payload-from-peers.bin", "length": 40000, "piece length": 16384,
                             "pieces": b"\0" * 60}})


@pytest.fixture
def ftp_trap() -> Iterator[CountingListener]:
    trap = CountingListener()
    yield trap
    trap.sock.close()


@pytest.fixture
async def hostile(ftp_trap: CountingListener) -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def torrent(_r: web.Request) -> web.Response:
        return web.Response(body=TORRENT, content_type="application/x-bittorrent")

    async def metalink(r: web.Request) -> web.Response:
        xml = (f'<?xml version="1.0" encoding="UTF-8"?><metalink xmlns="urn:ietf:params:xml:ns:metalink">'
               f'<file name="from-metalink.bin"><size>5</size>'
               f'<url>http://{r.host}/metalink-target.bin</url></file></metalink>')
        return web.Response(text=xml, content_type="application/metalink4+xml")

    async def to_ftp(_r: web.Request) -> web.Response:
        raise web.HTTPFound(f"ftp://127.0.0.1:{ftp_trap.port}/model.safetensors")

    @web.middleware
    async def record(request: web.Request, handler):  # type: ignore[no-untyped-def]
        seen.append(request.path)
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.router.add_get("/model.safetensors", torrent)
    app.router.add_get("/list.safetensors", metalink)
    app.router.add_get("/ftp.safetensors", to_ftp)
    app.router.add_get("/metalink-target.bin", _peer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", seen  # type: ignore[union-attr]
    await runner.cleanup()


@pytest.fixture
async def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Aria2Daemon]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home" / ".cache"))
    d = Aria2Daemon(tmp_path / "store")
    yield d
    await d.shutdown(grace=0.2)


def _sockets(pid: int, rpc_port: int) -> list[str]:
    """Everything the daemon listens on or has bound for UDP, but its loopback RPC port."""
    out = []
    for c in psutil.Process(pid).net_connections("all"):
        if c.type == socket.SOCK_STREAM and c.status == psutil.CONN_LISTEN and c.laddr.port != rpc_port:
            out.append(f"tcp {c.laddr.ip}:{c.laddr.port}")
        elif c.type == socket.SOCK_DGRAM and c.laddr:
            out.append(f"udp {c.laddr.ip}:{c.laddr.port}")
    return out


async def _fetch(daemon: Aria2Daemon, url: str, part: Path) -> BaseException | None:
    t = Transfer(url=url, headers={}, part_path=part, size=None)
    try:
        await asyncio.wait_for(Aria2Engine(daemon).fetch(t, lambda *a: None, lambda: None), 60)
    except (DownloadError, asyncio.TimeoutError) as exc:
        return exc
    return None


@pytest.mark.parametrize("path", ["/model.safetensors", "/list.safetensors"])
async def test_torrent_or_metalink_answer_stays_one_plain_file(
        daemon: Aria2Daemon, hostile: tuple[str, list[str]], tmp_path: Path, path: str) -> None:
    base, seen = hostile
    out = tmp_path / "store" / "models"
    await _fetch(daemon, base + path, out / "m.safetensors.part")
    await asyncio.sleep(1.0)  # a followed torrent starts its listeners (BT, DHT) within this
    client = await daemon.ensure()
    assert daemon.pid is not None
    assert _sockets(daemon.pid, client.port) == [], "aria2c must not become a peer on the network"
    assert sorted(p.name for p in out.iterdir()) == ["m.safetensors.part"]
    assert "/metalink-target.bin" not in seen, "the metalink's own links must not be followed"
    assert not (tmp_path / "home" / ".cache" / "aria2").exists()
    assert not (tmp_path / "home" / ".aria2").exists()


async def test_redirect_to_ftp_refused_with_one_sentence_by_both_engines(
        daemon: Aria2Daemon, hostile: tuple[str, list[str]], ftp_trap: CountingListener, tmp_path: Path) -> None:
    base, _seen = hostile
    err = await _fetch(daemon, base + "/ftp.safetensors", tmp_path / "out" / "f.safetensors.part")
    assert isinstance(err, DownloadError), err
    assert "redirected the download to a ftp:// address" in err.message and not err.retryable
    assert ftp_trap.connections == 0, "aria2c connected to the ftp:// target"
    engine = PythonEngine()
    try:
        t = Transfer(url=base + "/ftp.safetensors", headers={}, part_path=tmp_path / "py" / "f.part", size=None)
        with pytest.raises(DownloadError) as py_err:
            await engine.fetch(t, lambda *a: None, lambda: None)
    finally:
        await engine.close()
    assert py_err.value.message == err.message


async def test_aria2_log_is_private_and_names_no_url(daemon: Aria2Daemon, hostile: tuple[str, list[str]],
                                                     tmp_path: Path) -> None:
    base, _seen = hostile
    await _fetch(daemon, base + "/ftp.safetensors?token=sdptest-url-secret&X-Amz-Signature=abc",
                 tmp_path / "out" / "g.safetensors.part")
    log = daemon.log_path
    assert log.stat().st_mode & 0o077 == 0, "aria2.log must be readable by its owner only"
    assert "sdptest-url-secret" not in log.read_text(errors="replace")
