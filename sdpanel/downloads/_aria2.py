"""A managed aria2c daemon and its JSON-RPC client over the WebSocket.

The daemon is started detached (its own session) so it outlives the kernel; its pid and
port go to ``<storage>/.sdpanel/pids/aria2.json`` and its RPC secret only to a 0600 config
file under ``<storage>/.sdpanel/aria2/`` handed over with ``--conf-path`` — never argv, so
``ps`` cannot show it. A new kernel re-attaches when the recorded process is alive and
answers RPC with that secret; otherwise a fresh daemon is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import psutil

from sdpanel._childenv import child_env
from sdpanel.storage import StorageRoot

__all__ = ["Aria2Client", "Aria2Daemon", "Aria2RpcError", "Aria2Unavailable", "aria2_available"]

NOTIFICATIONS = (
    "aria2.onDownloadStart", "aria2.onDownloadPause", "aria2.onDownloadStop",
    "aria2.onDownloadComplete", "aria2.onDownloadError", "aria2.onBtDownloadComplete",
)
# A pid record's start time vs psutil's create_time: beyond this the pid was reused.
_START_TOLERANCE_S = 5.0


class Aria2Unavailable(RuntimeError):
    """The daemon cannot be started or reached."""


class Aria2RpcError(RuntimeError):
    """aria2 answered a call with a JSON-RPC error (e.g. an unknown GID)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(f"aria2 RPC error {code}: {message}")


def aria2_available(executable: str = "aria2c") -> bool:
    return shutil.which(executable) is not None


def _register_secret(value: str) -> None:
    # The RPC secret is a secret like any token: make the redactor mask it everywhere.
    with contextlib.suppress(Exception):
        from sdpanel.settings import register_secret

        register_secret(value)


NotificationFn = Callable[[str, str], None]  # (method, gid)


class Aria2Client:
    """JSON-RPC 2.0 over aria2's WebSocket: requests matched to answers by id, and
    notifications dispatched to subscribers (per GID or for all)."""

    def __init__(self, port: int, secret: str) -> None:
        self.port = port
        self._token = f"token:{secret}"
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._subs: list[NotificationFn] = []
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connect_lock = asyncio.Lock()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/jsonrpc"

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def connect(self, timeout: float = 5.0) -> None:
        async with self._connect_lock:
            if self.connected:
                return
            if self._session is None or self._session.closed:
                self._session = aiohttp.ClientSession()
            try:
                self._ws = await self._session.ws_connect(
                    self.url, timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
                    max_msg_size=64 * 1024 * 1024, heartbeat=None,
                )
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                raise Aria2Unavailable(f"aria2c RPC on port {self.port} does not answer: {exc}") from exc
            self._reader = asyncio.ensure_future(self._read_loop(self._ws))

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                for item in data if isinstance(data, list) else [data]:
                    self._dispatch(item)
        finally:
            err = Aria2Unavailable(f"aria2c RPC connection on port {self.port} closed")
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(err)
            self._pending.clear()
            # Wake every waiter so it notices the loss promptly (it re-checks and reconnects).
            for cb in list(self._subs):
                with contextlib.suppress(Exception):
                    cb("closed", "")

    def _dispatch(self, item: dict[str, Any]) -> None:
        if "id" in item and item.get("id") is not None:
            fut = self._pending.pop(str(item["id"]), None)
            if fut is None or fut.done():
                return
            if "error" in item:
                e = item["error"] or {}
                fut.set_exception(Aria2RpcError(int(e.get("code", -1)), str(e.get("message", ""))))
            else:
                fut.set_result(item.get("result"))
            return
        method = item.get("method", "")
        for event in item.get("params") or []:
            gid = str(event.get("gid", "")) if isinstance(event, dict) else ""
            for cb in list(self._subs):
                with contextlib.suppress(Exception):
                    cb(method, gid)

    def subscribe(self, callback: NotificationFn) -> Callable[[], None]:
        self._subs.append(callback)

        def unsubscribe() -> None:
            if callback in self._subs:
                self._subs.remove(callback)

        return unsubscribe

    async def call(self, method: str, *params: Any, timeout: float = 10.0) -> Any:
        """Call an ``aria2.*`` method (the secret token is prepended) or ``system.*``."""
        if not self.connected:
            await self.connect()
        assert self._ws is not None
        rid = str(next(self._ids))
        full = [self._token, *params] if method.startswith("aria2.") else list(params)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            await self._ws.send_str(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method,
                                                "params": full}))
            return await asyncio.wait_for(fut, timeout)
        except (ConnectionError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise Aria2Unavailable(f"aria2c RPC call {method} failed: {exc}") from exc
        finally:
            self._pending.pop(rid, None)

    async def multicall(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Batch several ``aria2.*`` calls in one round trip (``system.multicall``).
        Each result is the value, or an :class:`Aria2RpcError` for a failed call."""
        payload = [{"methodName": m, "params": [self._token, *p]} for m, p in calls]
        raw = await self.call("system.multicall", payload)
        out: list[Any] = []
        for r in raw:
            if isinstance(r, dict) and "code" in r:
                out.append(Aria2RpcError(int(r["code"]), str(r.get("message", ""))))
            else:
                out.append(r[0] if isinstance(r, list) and r else r)
        return out

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await self._reader
        if self._session is not None:
            await self._session.close()
        self._ws = self._reader = self._session = None


@dataclass
class _Record:
    pid: int
    port: int
    started: float


class Aria2Daemon:
    """Finds or starts the store's aria2c daemon and hands out a connected client."""

    def __init__(self, storage_root: str | os.PathLike[str] | StorageRoot, executable: str = "aria2c",
                 max_concurrent: int = 16) -> None:
        root = storage_root if isinstance(storage_root, StorageRoot) else StorageRoot.at(storage_root)
        self.root = root
        self.executable = executable
        self.max_concurrent = max_concurrent
        self.dir = root.state_dir / "aria2"
        self.pid_path = root.state_path("pids", "aria2.json")
        self.conf_path = self.dir / "aria2.conf"
        self.log_path = root.state_path("logs", "aria2.log")
        self.client: Aria2Client | None = None
        self.pid: int | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._lock = asyncio.Lock()

    # -- records -------------------------------------------------------------------------
    def _read_record(self) -> tuple[_Record, str] | None:
        try:
            data = json.loads(self.pid_path.read_text(encoding="utf-8"))
            secret = self._read_secret()
            return _Record(int(data["pid"]), int(data["port"]), float(data["started"])), secret
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _read_secret(self) -> str:
        for line in self.conf_path.read_text(encoding="utf-8").splitlines():
            if line.startswith("rpc-secret="):
                return line.split("=", 1)[1].strip()
        raise ValueError("no rpc-secret in aria2.conf")

    def _alive(self, rec: _Record) -> bool:
        try:
            proc = psutil.Process(rec.pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            if proc.create_time() > rec.started + _START_TOLERANCE_S:
                return False  # the pid now belongs to another process
            return "aria2c" in proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    # -- lifecycle -----------------------------------------------------------------------
    async def ensure(self) -> Aria2Client:
        """A connected client: the running daemon's if it answers, else a fresh daemon's."""
        async with self._lock:
            if self.client is not None and self.client.connected and self.pid and \
                    self._alive(_Record(self.pid, self.client.port, time.time())):
                return self.client
            if self.client is not None:
                await self.client.close()
                self.client = None
            self.dir.mkdir(parents=True, exist_ok=True)
            # Two kernels sharing one store must not both start a daemon.
            lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                await asyncio.to_thread(fcntl.flock, lock_fd, fcntl.LOCK_EX)
                client = await self._attach()
                if client is None:
                    client = await self._start()
            finally:
                os.close(lock_fd)
            self.client = client
            return client

    async def _attach(self) -> Aria2Client | None:
        found = self._read_record()
        if found is None:
            return None
        rec, secret = found
        if not self._alive(rec):
            return None
        client = Aria2Client(rec.port, secret)
        try:
            await client.connect(timeout=3.0)
            await client.call("aria2.getVersion", timeout=3.0)
        except (Aria2Unavailable, Aria2RpcError):
            await client.close()
            # Alive but not ours to talk to (hung, or a stale secret): retire it, it is our
            # daemon (name and start time match the record).
            with contextlib.suppress(psutil.Error):
                psutil.Process(rec.pid).terminate()
            return None
        _register_secret(secret)
        self.pid = rec.pid
        return client

    async def _start(self) -> Aria2Client:
        exe = shutil.which(self.executable)
        if exe is None:
            raise Aria2Unavailable("aria2c is not installed: install the 'aria2' package or "
                                   "choose the python download engine")
        last: Exception | None = None
        for _attempt in range(3):  # a picked free port can be taken before aria2c binds it
            secret = secrets.token_hex(16)
            _register_secret(secret)
            port = _free_port()
            self._write_conf(secret, port)
            # 0600: whatever aria2 prints stays the user's own (it runs quiet, see the conf).
            log = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
            os.chmod(self.log_path, 0o600)
            try:
                proc = subprocess.Popen(
                    [exe, f"--conf-path={self.conf_path}"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, close_fds=True, env=child_env(), cwd=self.dir,
                )
            finally:
                log.close()
            started = psutil.Process(proc.pid).create_time()
            client = Aria2Client(port, secret)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    last = Aria2Unavailable(f"aria2c exited with code {proc.returncode}; see {self.log_path}")
                    break
                try:
                    await client.connect(timeout=1.0)
                    await client.call("aria2.getVersion", timeout=2.0)
                except (Aria2Unavailable, Aria2RpcError) as exc:
                    last = exc
                    await asyncio.sleep(0.05)
                    continue
                self._popen, self.pid = proc, proc.pid
                tmp = self.pid_path.with_suffix(".tmp")
                tmp.write_text(json.dumps({"name": "aria2", "pid": proc.pid, "port": port,
                                           "started": started, "kind": "aria2c",
                                           "starter": os.getpid()}), encoding="utf-8")
                os.replace(tmp, self.pid_path)
                return client
            await client.close()
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        raise Aria2Unavailable(f"could not start aria2c: {last}")

    def _write_conf(self, secret: str, port: int) -> None:
        # Options a user could otherwise only give on the command line; the secret is the
        # reason this file exists (0600, never in argv).
        lines = [
            "enable-rpc=true",
            "rpc-listen-all=false",
            f"rpc-listen-port={port}",
            f"rpc-secret={secret}",
            "rpc-max-request-size=16M",
            f"max-concurrent-downloads={self.max_concurrent}",
            "max-connection-per-server=16",
            "min-split-size=1M",
            "continue=true",
            "file-allocation=none",
            "allow-overwrite=false",
            "auto-file-renaming=false",
            # Control files saved every second so a kill -9 of aria2c loses at most ~1 s.
            "auto-save-interval=1",
            "max-download-result=10000",
            "connect-timeout=10",
            "timeout=20",
            "max-tries=5",
            "retry-wait=1",
            "console-log-level=warn",
            "summary-interval=0",
            "check-certificate=true",
            # Plain HTTP(S) files only: a server answering a torrent or a metalink must not
            # turn the daemon into a peer listening on the network, nor write other files.
            "follow-torrent=false",
            "follow-metalink=false",
            "enable-dht=false",
            "enable-dht6=false",
            "bt-enable-lpd=false",
            "enable-peer-exchange=false",
            "bt-max-peers=1",
            f"dht-file-path={self.dir / 'dht.dat'}",
            f"dht-file-path6={self.dir / 'dht6.dat'}",
            # aria2 has no protocol allow-list: ftp:// and sftp:// (a redirect can lead there)
            # go through this proxy, a closed loopback port, so they fail without a connection.
            "ftp-proxy=http://127.0.0.1:1",
            "no-netrc=true",
            # Console output names URLs (signed, with tokens): errors come over RPC instead.
            "quiet=true",
        ]
        fd = os.open(self.conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(self.conf_path, 0o600)

    def running_pid(self) -> int | None:
        """The pid of this store's daemon if one is running (from its pid record)."""
        found = self._read_record()
        return found[0].pid if found and self._alive(found[0]) else None

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop the daemon (tests, ``sdpanel clean``); downloads resume from control files.
        aria2c takes seconds to exit after ``forceShutdown``; after ``grace`` it is killed
        (its control files are at most a second old)."""
        client = self.client
        if client is None:
            found = self._read_record()
            if found and self._alive(found[0]):
                client = Aria2Client(found[0].port, found[1])
                self.pid = found[0].pid
        if client is not None:
            with contextlib.suppress(Exception):
                await client.call("aria2.forceShutdown", timeout=3.0)
            await client.close()
        pid = self.pid
        if pid:
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and not self._reap(pid):
                await asyncio.sleep(0.05)
            if not self._reap(pid):
                with contextlib.suppress(psutil.Error):
                    psutil.Process(pid).kill()
                if self._popen is not None and self._popen.pid == pid:
                    self._popen.wait(5)
        self.client, self.pid = None, None
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()

    def _orphaned(self) -> bool:
        """The process that started the daemon is gone (a killed CLI run, whose download
        this process re-attached to): nobody keeps it on purpose any more."""
        try:
            starter = int(json.loads(self.pid_path.read_text(encoding="utf-8"))["starter"])
        except (OSError, ValueError, KeyError, TypeError):
            return False  # a record without a starter: assume someone keeps it
        return starter != os.getpid() and not psutil.pid_exists(starter)

    def _other_clients(self) -> int:
        """RPC connections to the daemon besides ours (another kernel or CLI run using it)."""
        if self.pid is None or self.client is None:
            return 0
        try:
            conns = psutil.Process(self.pid).net_connections("inet")
        except psutil.Error:
            return 0
        return sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED
                   and c.laddr.port == self.client.port) - 1

    async def shutdown_if_idle(self, wait: bool = True) -> bool:
        """Stop the daemon if this object started it (or re-attached to one whose starter is
        gone), nothing is downloading and no other client is connected: a one-shot CLI run
        should not leave a daemon behind; a kernel's daemon stays. With ``wait`` false the
        caller does not sit through aria2c's own exit (1 s after SIGTERM, 4 s after
        ``forceShutdown``): the record goes first, so nobody attaches to it."""
        if self.client is None or (self._popen is None and not self._orphaned()):
            return False
        try:
            stat = await self.client.call("aria2.getGlobalStat", timeout=3.0)
        except (Aria2Unavailable, Aria2RpcError):
            return False
        if int(stat.get("numActive", 0)) or int(stat.get("numWaiting", 0)) or self._other_clients() > 0:
            return False
        if wait:
            await self.shutdown(grace=2.0)
            return True
        pid, self.pid = self.pid, None
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()
        await self.client.close()
        self.client = None
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        return True

    def _reap(self, pid: int) -> bool:
        if self._popen is not None and self._popen.pid == pid:
            return self._popen.poll() is not None
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            return True

    async def close(self) -> None:
        """Disconnect; the daemon keeps running for the next kernel."""
        if self.client is not None:
            await self.client.close()
            self.client = None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
