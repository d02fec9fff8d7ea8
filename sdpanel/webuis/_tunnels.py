"""Public tunnels to a WebUI (cloudflared, ngrok, zrok, localtunnel, pinggy), always behind
a login, plus the Jupyter-server-proxy link.

No public URL without a login: :func:`open_tunnel` is the only way to start one and it
always sets up authentication first — ngrok enforces our basic auth itself (configured in a
0600 config file, never on its command line); every other tool points at our
authenticating proxy (``_proxy``), started as a detached process like the tunnel itself.
The public URL is read from the tool's output with the regex in ``configs/webui_launch.json``;
a watcher restarts a tool that exits (a new URL is published).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from sdpanel._childenv import child_env
from sdpanel.runtime import EventBus, LogEvent, StateEvent
from sdpanel.storage import StorageRoot

from ._process import free_port, probe
from ._proxy import USER, new_password
from ._registry import tunnel_table

__all__ = ["Tunnel", "TunnelError", "jupyter_proxy_url", "open_tunnel", "recorded_tunnels",
           "stop_recorded_tunnels"]

_PKG_PARENT = str(Path(__file__).resolve().parents[2])


class TunnelError(RuntimeError):
    pass


def jupyter_proxy_url(base_url: str, port: int) -> str:
    """The WebUI through jupyter-server-proxy: Jupyter's own login stays in front."""
    return f"{base_url.rstrip('/')}/proxy/{port}/"


def _spawn(argv: list[str], log: Path, env: dict[str, str],
           pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        return subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env(env), start_new_session=True, cwd=log.parent,
                                pass_fds=pass_fds)


def _killpg(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@dataclass
class Tunnel:
    tool: str
    name: str
    url: str = ""
    user: str = USER
    password: str = field(default="", repr=False)
    """Shown once to the user (panel / cell output); never logged or saved."""
    exposed_port: int = 0
    """The local port the tool forwards to (our proxy, or the WebUI with ngrok's own auth)."""
    auth: str = "proxy"
    state: str = "starting"
    restarts: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    proxy: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_path: Path | None = None
    config_path: Path | None = None
    _watch: asyncio.Task[None] | None = field(default=None, repr=False)

    def public_dict(self) -> dict[str, Any]:
        """For panels and `sdpanel ps --json`: everything but the password."""
        return {"tool": self.tool, "name": self.name, "url": self.url, "user": self.user,
                "auth": self.auth, "state": self.state, "restarts": self.restarts,
                "pid": self.proc.pid if self.proc else None}

    async def stop(self) -> None:
        self.state = "stopped"
        if self.log_path is not None:
            for rec in self.log_path.parent.parent.glob(f"pids/tunnel-{self.tool}-{self.name}.json"):
                rec.unlink(missing_ok=True)
        if self._watch is not None:
            self._watch.cancel()
        await asyncio.to_thread(_killpg, self.proc)
        await asyncio.to_thread(_killpg, self.proxy)
        if self.config_path is not None:
            self.config_path.unlink(missing_ok=True)  # it holds the password


async def _start_proxy(target_port: int, password: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [_PKG_PARENT, os.environ.get("PYTHONPATH")]))}
    # The password travels through a pipe the child reads once at start: never argv, never
    # its environment (``/proc/<pid>/environ`` keeps what a process started with).
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, password.encode())
        os.close(write_fd)
        proc = _spawn([sys.executable, "-m", "sdpanel.webuis._proxy", "--target", str(target_port),
                       "--port", str(port), "--password-fd", str(read_fd)], log, env, (read_fd,))
    finally:
        os.close(read_fd)
    for _ in range(200):
        if proc.poll() is not None:
            raise TunnelError(f"The login proxy exited (code {proc.returncode}); see {log}")
        if await probe(f"http://127.0.0.1:{port}/", timeout=1):
            return proc, port
        await asyncio.sleep(0.1)
    _killpg(proc)
    raise TunnelError(f"The login proxy did not start; see {log}")


def _ngrok_config(path: Path, port: int, password: str, token: str | None) -> None:
    lines = ['version: "2"']
    if token:
        lines.append(f"authtoken: {json.dumps(token)}")
    lines += ["tunnels:", "  sdpanel:", "    proto: http", f"    addr: {port}",
              "    basic_auth:", f"      - {json.dumps(f'{USER}:{password}')}"]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")


async def _read_url(proc: subprocess.Popen[bytes], log: Path, start: int, pattern: str,
                    timeout: float) -> str:
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_bytes()[start:].decode("utf-8", errors="replace")
        m = rx.search(text)
        if m:
            return m.group(1)
        if proc.poll() is not None:
            tail = "\n".join(f"  | {x}" for x in text.splitlines()[-10:])
            raise TunnelError(f"The tunnel tool exited (code {proc.returncode}) before printing "
                              f"its public URL. Its output:\n{tail}")
        await asyncio.sleep(0.1)
    raise TunnelError(f"No public URL from the tunnel tool within {timeout:.0f}s; see {log}")


async def open_tunnel(tool: str, webui_port: int, *, storage: StorageRoot, name: str = "webui",
                      bus: EventBus | None = None, timeout: float = 60.0, max_restarts: int = 5,
                      watch_interval: float = 1.0, http_check_s: float = 60.0) -> Tunnel:
    """Start ``tool`` for the WebUI on ``webui_port`` behind a login and return the tunnel
    with its public URL and the credentials (show them once)."""
    from sdpanel.settings import redact, resolve_secret

    table = tunnel_table()
    if tool not in table:
        raise TunnelError(f"Unknown tunnel {tool!r}; choose one of: {', '.join(table)}")
    spec = table[tool]
    exe = spec["argv"][0]
    if not any(os.access(Path(d) / exe, os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep)):
        raise TunnelError(f"`{exe}` is not installed: install {tool} (or pick another tunnel)")
    log = storage.state_path("logs", f"tunnel-{tool}-{name}.log")
    tunnel = Tunnel(tool=tool, name=name, password=new_password(), auth=spec["auth"], log_path=log)
    topic, key = f"webui:{name}", f"tunnel:{tool}"
    env: dict[str, str] = {}
    config = storage.state_path("tunnels", f"{tool}-{name}.yml")
    own_token = resolve_secret(spec["secret"]) if spec.get("secret") and spec["auth"] == "own" else None
    if spec["auth"] == "own":
        tunnel.exposed_port, tunnel.config_path = webui_port, config
    else:
        tunnel.proxy, tunnel.exposed_port = await _start_proxy(
            webui_port, tunnel.password, storage.state_path("logs", f"proxy-{name}.log"))
    if spec.get("secret") and spec["auth"] != "own":
        token = resolve_secret(spec["secret"])
        if token:
            env[spec.get("token_env", spec["secret"])] = token
    argv = [a.replace("{port}", str(tunnel.exposed_port)).replace("{config}", str(config))
            for a in spec["argv"]]

    async def launch() -> None:
        start = log.stat().st_size if log.exists() else 0
        if tunnel.config_path is not None:
            # The config holds the authtoken and the login: on disk only until the tool has
            # read it (it has once it prints its URL), written again for each restart.
            _ngrok_config(config, webui_port, tunnel.password, own_token)
        try:
            tunnel.proc = _spawn(argv, log, env)
            tunnel.url = await _read_url(tunnel.proc, log, start, spec["url"], timeout)
        finally:
            if tunnel.config_path is not None:
                tunnel.config_path.unlink(missing_ok=True)
        tunnel.state = "ready"
        storage.state_path("pids", f"tunnel-{tool}-{name}.json").write_text(json.dumps(
            {"name": f"tunnel-{tool}-{name}", "pid": tunnel.proc.pid, "started": time.time(),
             "kind": "tunnel", "url": tunnel.url, "log": str(log), "cmdline": argv,
             "proxy_pid": tunnel.proxy.pid if tunnel.proxy else None}), encoding="utf-8")
        if bus:
            bus.publish(StateEvent(topic=topic, key=key, state="ready", data=tunnel.public_dict()))

    async def public_url_answers() -> bool:
        auth = base64.b64encode(f"{tunnel.user}:{tunnel.password}".encode()).decode()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s, \
                    s.get(tunnel.url, headers={"Authorization": f"Basic {auth}"}) as r:
                return r.status < 500
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False

    async def watch() -> None:
        """Health: the tool process must live, and its public URL must answer (checked every
        ``http_check_s``; 3 failures in a row count as a drop); a drop restarts it (new URL)."""
        failures, last_check = 0, time.monotonic()
        while True:
            await asyncio.sleep(watch_interval)
            if tunnel.proc is None:
                continue
            if tunnel.proc.poll() is None:
                if not http_check_s or time.monotonic() - last_check < http_check_s:
                    continue
                last_check = time.monotonic()
                failures = 0 if await public_url_answers() else failures + 1
                if failures < 3:
                    continue
                failures = 0
                await asyncio.to_thread(_killpg, tunnel.proc)
            if tunnel.restarts >= max_restarts:
                tunnel.state = "failed"
                if bus:
                    bus.publish(StateEvent(topic=topic, key=key, state="failed", data=tunnel.public_dict()))
                return
            tunnel.restarts += 1
            tunnel.state = "restarting"
            if bus:
                bus.publish(LogEvent(topic=topic, key=key, level="warning", message=redact(
                    f"{tool} exited (code {tunnel.proc.returncode}); restarting ({tunnel.restarts}/{max_restarts})")))
            try:
                await launch()
            except TunnelError as exc:
                if bus:
                    bus.publish(LogEvent(topic=topic, key=key, level="error", message=redact(str(exc))))

    try:
        await launch()
    except BaseException:
        await tunnel.stop()
        raise
    tunnel._watch = asyncio.get_running_loop().create_task(watch())
    return tunnel


def _same_process(pid: int, cmdline: list[str] | None) -> bool:
    import psutil

    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        cmd = p.cmdline()
    except psutil.Error:
        return False
    # tunnel stubs/wrappers may exec another interpreter: compare the tool's own arguments
    return cmdline is None or cmd[-len(cmdline) + 1:] == cmdline[1:]


def _is_our_proxy(pid: int) -> bool:
    import psutil

    try:
        return "sdpanel.webuis._proxy" in psutil.Process(pid).cmdline()
    except psutil.Error:
        return False


def stop_recorded_tunnels(storage: StorageRoot, name: str) -> int:
    """Stop tunnels (and their login proxies) a previous process left for WebUI ``name``."""
    stopped = 0
    for path in (storage.state_dir / "pids").glob(f"tunnel-*-{name}.json"):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            rec = {}
        tool_pid, proxy_pid = rec.get("pid"), rec.get("proxy_pid")
        targets = []
        if isinstance(tool_pid, int) and _same_process(tool_pid, rec.get("cmdline")):
            targets.append(tool_pid)
        if isinstance(proxy_pid, int) and _is_our_proxy(proxy_pid):
            targets.append(proxy_pid)
        for pid in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
                stopped += 1
        path.unlink(missing_ok=True)
    for config in (storage.state_dir / "tunnels").glob(f"*-{name}.yml"):
        config.unlink(missing_ok=True)  # a tool's config with its token and our login
    return stopped


def recorded_tunnels(storage: StorageRoot, name: str) -> list[dict[str, Any]]:
    """Tunnels recorded for WebUI ``name`` (from any process): tool, url, pid, alive."""
    out = []
    for path in sorted((storage.state_dir / "pids").glob(f"tunnel-*-{name}.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        pid = rec.get("pid")
        out.append({"tool": path.stem.split("-")[1], "url": rec.get("url"), "pid": pid,
                    "alive": isinstance(pid, int) and _same_process(pid, rec.get("cmdline"))})
    return out
