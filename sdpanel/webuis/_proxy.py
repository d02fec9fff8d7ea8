"""An authenticating reverse proxy in front of a local WebUI (HTTP and WebSocket).

Public tunnels without their own login point at this proxy, never at the WebUI: every
request needs HTTP basic auth (user ``sdpanel`` and a random password made per launch) or
the login cookie the proxy sets after a successful basic auth, so browsers keep working
for WebSockets and fetches. The password is registered with the redactor, so it never
reaches a log, and it is handed to a detached proxy process through its environment, never
its command line.

Detached use (survives the kernel, like the WebUI itself)::

    SDPANEL_PROXY_PASSWORD=... python -m sdpanel.webuis._proxy --target 8188 --port 0
    # prints "PROXY-PORT <n>" once listening
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hmac
import os
import secrets
import sys

import aiohttp
from aiohttp import WSMsgType, web

__all__ = ["AuthProxy", "new_password"]

COOKIE = "sdpanel_auth"
USER = "sdpanel"
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
        "transfer-encoding", "upgrade", "host", "authorization", "content-length"}


def new_password() -> str:
    from sdpanel.settings import register_secret

    pw = secrets.token_urlsafe(12)
    register_secret(pw)  # the redactor masks it everywhere from now on
    return pw


class AuthProxy:
    def __init__(self, target_port: int, password: str, *, user: str = USER,
                 host: str = "127.0.0.1", port: int = 0, target_host: str = "127.0.0.1") -> None:
        if not password:
            raise ValueError("The proxy needs a password: a public URL without a login is refused")
        self.target = f"http://{target_host}:{target_port}"
        self.user, self.password, self.host, self.port = user, password, host, port
        self._cookie = secrets.token_urlsafe(24)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _authorized(self, request: web.Request) -> bool:
        if hmac.compare_digest(request.cookies.get(COOKIE, ""), self._cookie):
            return True
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            user, _, pw = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, self.user) & hmac.compare_digest(pw, self.password)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.Response(status=401, text="Login required (user sdpanel; the password is "
                                "shown in the Launch panel)\n",
                                headers={"WWW-Authenticate": 'Basic realm="sdpanel WebUI"'})
        if request.headers.get("Upgrade", "").lower() == "websocket":
            resp = await self._websocket(request)
        else:
            resp = await self._http(request)
        return resp

    def _forward_headers(self, request: web.Request) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP and k.lower() != "cookie"}
        cookies = [f"{k}={v}" for k, v in request.cookies.items() if k != COOKIE]
        if cookies:
            headers["Cookie"] = "; ".join(cookies)
        headers["X-Forwarded-Host"] = request.host
        headers["X-Forwarded-Proto"] = request.headers.get("X-Forwarded-Proto", request.scheme)
        return headers

    def _set_cookie(self, request: web.Request, resp: web.StreamResponse) -> None:
        if request.cookies.get(COOKIE) != self._cookie:
            resp.set_cookie(COOKIE, self._cookie, httponly=True, samesite="Lax")

    async def _http(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = request.content if request.body_exists else None
        try:
            async with self._session.request(request.method, self.target + request.path_qs,
                                             headers=self._forward_headers(request), data=body,
                                             allow_redirects=False) as up:
                resp = web.StreamResponse(status=up.status, reason=up.reason)
                for k, v in up.headers.items():
                    if k.lower() not in _HOP and k.lower() != "content-encoding":
                        resp.headers.add(k, v)
                if "Content-Encoding" in up.headers:
                    resp.headers["Content-Encoding"] = up.headers["Content-Encoding"]
                self._set_cookie(request, resp)
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
        except aiohttp.ClientError as exc:
            return web.Response(status=502, text=f"The WebUI is not answering: {exc}\n")

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        client = web.WebSocketResponse(autoping=True)
        self._set_cookie(request, client)
        await client.prepare(request)
        headers = {k: v for k, v in self._forward_headers(request).items()
                   if not k.lower().startswith("sec-websocket")}
        try:
            async with self._session.ws_connect(self.target + request.path_qs, headers=headers) as up:
                async def pump(src, dst) -> None:  # type: ignore[no-untyped-def]
                    async for msg in src:
                        if msg.type == WSMsgType.TEXT:
                            await dst.send_str(msg.data)
                        elif msg.type == WSMsgType.BINARY:
                            await dst.send_bytes(msg.data)
                        else:
                            break

                tasks = [asyncio.ensure_future(pump(client, up)), asyncio.ensure_future(pump(up, client))]
                _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in pending:
                    t.cancel()
        except aiohttp.ClientError:
            pass
        await client.close()
        return client

    async def start(self) -> int:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                                              auto_decompress=False)
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="sdpanel authenticating proxy")
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    password = os.environ.pop("SDPANEL_PROXY_PASSWORD", "")
    if not password:
        print("SDPANEL_PROXY_PASSWORD is not set: refusing to serve without a login", file=sys.stderr)
        return 2

    async def run() -> None:
        proxy = AuthProxy(args.target, password, port=args.port)
        port = await proxy.start()
        print(f"PROXY-PORT {port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
