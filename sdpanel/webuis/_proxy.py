"""An authenticating reverse proxy in front of a local WebUI (HTTP and WebSocket).

Public tunnels without their own login point at this proxy, never at the WebUI: every
request needs HTTP basic auth (user ``sdpanel`` and a random password made per launch) or
a login cookie the proxy mints at each successful basic auth (rules in ``_proxy_auth``).
The password is registered with the redactor, so it never reaches a log, and a detached
proxy reads it from a pipe (``--password-fd``), never its command line or environment.

The WebUI sees the host the browser used (``Host`` is forwarded, plus ``X-Forwarded-Host``
/ ``-Proto``): ComfyUI compares ``Host`` with ``Origin`` and answers 403 to a browser's
``POST /prompt`` when they differ. WebSocket upgrades are accepted only from pages of the
proxy's own origin, so another site cannot drive the WebUI with a browser's cached login.

Detached use (survives the kernel, like the WebUI itself)::

    python -m sdpanel.webuis._proxy --target 8188 --port 0 --password-fd 3  3<password-file
    # prints "PROXY-PORT <n>" once listening
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
from urllib.parse import urlsplit

import aiohttp
from aiohttp import WSMsgType, web

from ._proxy_auth import SESSION_TTL_S, Credentials, LoginThrottle, Sessions, client_key

__all__ = ["AuthProxy", "new_password", "public_host"]

COOKIE = "sdpanel_auth"
USER = "sdpanel"
_LOG = logging.getLogger("sdpanel.proxy")
# Hop-by-hop headers and the ones the proxy sets itself; Host is set explicitly below.
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
        "transfer-encoding", "upgrade", "host", "authorization", "content-length"}
_LOGIN_HINT = "user sdpanel; the password is shown in the Launch panel"


def new_password() -> str:
    from sdpanel.settings import register_secret

    pw = secrets.token_urlsafe(12)
    register_secret(pw)  # the redactor masks it everywhere from now on
    return pw


def public_host(request: web.Request) -> str:
    """The host[:port] the browser used: a tunnel that rewrites ``Host`` to the local address
    reports the public one in ``X-Forwarded-Host``."""
    forwarded = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
    return forwarded or request.host


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser page (scripts, CLI clients): no cross-site risk
    netloc = urlsplit(origin).netloc.lower()
    return netloc in {request.host.lower(), public_host(request).lower()}


def _https(request: web.Request) -> bool:
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return proto == "https" or request.secure


class AuthProxy:
    def __init__(self, target_port: int, password: str, *, user: str = USER,
                 host: str = "127.0.0.1", port: int = 0, target_host: str = "127.0.0.1",
                 sessions: Sessions | None = None, throttle: LoginThrottle | None = None) -> None:
        if not password:
            raise ValueError("The proxy needs a password: a public URL without a login is refused")
        self.target = f"http://{target_host}:{target_port}"
        self.user, self.password, self.host, self.port = user, password, host, port
        self._creds = Credentials(user, password)
        self.sessions = sessions or Sessions()
        self.throttle = throttle or LoginThrottle()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _login(self, request: web.Request) -> web.Response | str | None:
        """None: a valid session cookie; a str: a new session token (basic auth passed);
        else the response refusing the request."""
        if self.sessions.valid(request.cookies.get(COOKIE, "")):
            return None
        client = client_key(request.headers, request.remote)
        wait = self.throttle.wait_s(client)
        if wait > 0:
            return web.Response(status=429, headers={"Retry-After": str(int(wait) + 1)},
                                text=f"Too many wrong passwords: wait {int(wait) + 1} s, then log in "
                                     f"again ({_LOGIN_HINT}).\n")
        ok = self._creds.check_header(request.headers.get("Authorization", ""))
        if ok:
            self.throttle.succeeded(client)
            return self.sessions.new()
        if ok is False:
            self.throttle.failed(client)
        return web.Response(status=401, text=f"Login required ({_LOGIN_HINT})\n",
                            headers={"WWW-Authenticate": 'Basic realm="sdpanel WebUI", charset="UTF-8"'})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        login = self._login(request)
        if isinstance(login, web.Response):
            return login
        try:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                if not _same_origin(request):
                    return web.Response(status=403, text="WebSocket refused: it must come from a page "
                                        "of this WebUI's own address.\n")
                return await self._websocket(request, login)
            return await self._http(request, login)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # one line in the log, never a traceback per request
            _LOG.warning("proxy: %s %s failed: %s", request.method, request.path, type(exc).__name__)
            return web.Response(status=502, text="The WebUI is not answering.\n")

    def _forward_headers(self, request: web.Request) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP and k.lower() != "cookie"}
        cookies = [f"{k}={v}" for k, v in request.cookies.items() if k != COOKIE]
        if cookies:
            headers["Cookie"] = "; ".join(cookies)
        headers["Host"] = public_host(request)
        headers["X-Forwarded-Host"] = public_host(request)
        headers["X-Forwarded-Proto"] = "https" if _https(request) else "http"
        return headers

    def _set_cookie(self, request: web.Request, resp: web.StreamResponse, token: str | None) -> None:
        if token is not None:
            resp.set_cookie(COOKIE, token, max_age=int(SESSION_TTL_S), path="/", httponly=True,
                            samesite="Lax", secure=_https(request))

    async def _http(self, request: web.Request, token: str | None) -> web.StreamResponse:
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
                self._set_cookie(request, resp, token)
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
        except aiohttp.ClientError as exc:
            return web.Response(status=502, text=f"The WebUI is not answering: {type(exc).__name__}\n")

    async def _websocket(self, request: web.Request, token: str | None) -> web.StreamResponse:
        assert self._session is not None
        client = web.WebSocketResponse(autoping=True)
        self._set_cookie(request, client, token)
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


def _read_password(fd: int) -> str:
    if fd < 0:
        return ""
    with os.fdopen(fd, "rb") as f:
        return f.read(4096).decode("utf-8", errors="replace").strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="sdpanel authenticating proxy")
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--password-fd", type=int, default=-1,
                        help="file descriptor to read the login password from (then closed)")
    args = parser.parse_args(argv)
    password = _read_password(args.password_fd)
    if not password:
        print("No password on --password-fd: refusing to serve without a login", file=sys.stderr)
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
