"""Install progress never passes 100 % (issue 17, item 9: it showed 102-145 %). A server
that gzips on request (nginx ``gzip on``, CDNs) made Content-Length the compressed size
while aiohttp counted the bytes after decoding. Now the install asks for the identity
encoding and counts bytes as they came over the wire, also from a server that compresses
whatever it is asked."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from aiohttp import web

from sdpanel.runtime import EventBus, ProgressEvent
from sdpanel.webuis import install_package, installed_info
from tests.fixtures.server_thread import ServerThread
from tests.fixtures.webui_packages import build_tree


class GzipServer(ServerThread):
    """Serves one package; ``always``: gzip even when the client asks for identity."""

    def __init__(self, package: bytes, always: bool) -> None:
        super().__init__()
        self.package, self.always = package, always
        self.accept: list[str] = []

    def build_app(self) -> web.Application:
        async def get(request: web.Request) -> web.Response:
            self.accept.append(request.headers.get("Accept-Encoding", ""))
            resp = web.Response(body=self.package, content_type="application/x-tar")
            if self.always:
                resp.enable_compression(force=web.ContentCoding.gzip)
            else:
                resp.enable_compression()  # honours Accept-Encoding, as nginx does
            return resp

        app = web.Application(middlewares=[self._record])
        app.router.add_get("/ComfyUI.tar", get)
        return app


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d = tmp_path_factory.mktemp("pkg")
    tree = build_tree(d / "tree", filler=2_000_000)
    with tarfile.open(d / "ComfyUI.tar", "w") as tf:
        tf.add(tree, arcname="ComfyUI")
    return (d / "ComfyUI.tar").read_bytes()


@pytest.mark.parametrize("always", [False, True], ids=["gzip-on-request", "gzip-always"])
async def test_install_progress_stays_within_100_percent(always: bool, package: bytes,
                                                          tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    bus = EventBus()
    bus.subscribe(lambda e: events.append(e) if isinstance(e, ProgressEvent) else None)
    srv = GzipServer(package, always).start()
    try:
        target = tmp_path / "comfyui"
        await install_package(f"http://127.0.0.1:{srv.port}/ComfyUI.tar", target,
                              webui="comfyui", bus=bus)
    finally:
        srv.stop()
    assert installed_info(target) is not None
    assert (target / "main.py").is_file()
    shown = [e.done * 100 // e.total for e in events if e.total]  # what the CLI prints
    assert shown and max(shown) <= 100 and shown[-1] == 100, shown
    assert srv.accept == ["identity"]
