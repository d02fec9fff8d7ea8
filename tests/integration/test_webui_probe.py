"""The ready probe: a WebUI whose server answers but whose probed route is still missing
(Forge: /sdapi/v1/* is 404 for a while after Gradio is up) is not ready yet."""

from __future__ import annotations

import asyncio

from aiohttp import web

from sdpanel.webuis._process import probe
from tests.fixtures.stub_comfyui import ThreadedApp


class LateAPI(ThreadedApp):
    def __init__(self) -> None:
        super().__init__()
        self.api_up = False

    def build(self) -> web.Application:
        app = web.Application()

        async def progress(_r: web.Request) -> web.Response:
            if not self.api_up:
                return web.json_response({"detail": "Not Found"}, status=404)
            return web.json_response({"progress": 0.0})

        app.router.add_get("/sdapi/v1/progress", progress)
        return app


def test_a_missing_route_is_not_ready_then_is() -> None:
    with LateAPI() as srv:
        url = f"{srv.url}/sdapi/v1/progress"
        assert asyncio.run(probe(url)) is False
        srv.api_up = True
        assert asyncio.run(probe(url)) is True
