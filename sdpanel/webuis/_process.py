"""WebUI processes: start detached, follow the log, probe readiness, stop, re-attach.

A WebUI must outlive the kernel that started it, so it runs in its own session
(``start_new_session``) and writes straight into its log file (a pipe to us would break
when the kernel dies). Its pid, port and command line are recorded in
``<storage>/.sdpanel/pids/webui-<name>.json``; a new kernel re-attaches when that pid is
alive, runs the same command line and answers the probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from sdpanel._childenv import child_env
from sdpanel.runtime import EventBus, LogEvent, StateEvent
from sdpanel.storage import StorageRoot

__all__ = ["LaunchSpec", "ProcessManager", "WebUICrashed", "WebUIProcess", "WebUIStartTimeout",
           "free_port", "port_free", "read_records", "start_failure_cause"]

TAIL_LINES = 500


_BAD_ARGS = re.compile(r"error: (unrecognized arguments: .*|argument .*)$")
_NO_MODULE = re.compile(r"ModuleNotFoundError: No module named '([^']+)'")


def start_failure_cause(name: str, tail: list[str]) -> str | None:
    """One sentence of cause and fix when the log shows a failure that a restart cannot
    cure (a rejected argument, a missing module); None for anything else."""
    for line in reversed(tail):
        if m := _BAD_ARGS.search(line):
            return (f"{name} rejected its arguments ({m.group(1).strip()}): fix the launch "
                    "arguments (--args, the launch_args setting) and launch again")
        if m := _NO_MODULE.search(line):
            return (f"the Python it runs on lacks the module {m.group(1)!r}: install it into the "
                    f"WebUI's venv, reinstall (`sdpanel install {name} --force`), or set "
                    "webui_python to a Python that has it")
    return None


class WebUICrashed(RuntimeError):
    def __init__(self, name: str, exit_code: int | None, tail: list[str], loop: bool = False,
                 tries: int = 1, cause: str | None = None) -> None:
        self.name, self.exit_code, self.tail, self.loop, self.cause = name, exit_code, tail, loop, cause
        code = "an unknown code" if exit_code is None else f"code {exit_code}"
        head = (f"{name} crashed {tries} times in a row (last exit {code}); gave up restarting it"
                if loop else f"{name} exited with {code}")
        lines = "\n".join(f"  | {line}" for line in tail[-15:]) or "  (no output)"
        if cause:
            super().__init__(f"{name} cannot start (exit {code}): {cause}. Last log lines:\n{lines}")
        else:
            super().__init__(f"{head}. Last log lines:\n{lines}\nFix the cause shown above "
                             f"(arguments, missing packages, GPU) and launch again.")


class WebUIStartTimeout(RuntimeError):
    pass


@dataclass
class LaunchSpec:
    name: str
    webui_dir: Path
    argv: list[str]
    """Command line; ``{port}`` is replaced by the chosen port."""
    port: int = 0
    """Preferred port (0: any free one). Taken → the next free one."""
    probe: str = "/"
    gpu: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 600.0


def port_free(port: int) -> bool:
    """Nothing listens on ``port``. SO_REUSEADDR, as the WebUI's own server sets it: the
    TIME_WAIT connections a stopped WebUI leaves do not keep it from its port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(preferred: int = 0, tries: int = 100) -> int:
    """``preferred`` when nothing listens there, else the next free one above it."""
    if preferred:
        for port in range(preferred, min(preferred + tries, 65536)):
            if port_free(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_records(storage: StorageRoot) -> list[dict[str, Any]]:
    """Recorded WebUI processes with an ``alive`` flag (for ``sdpanel ps``)."""
    out = []
    for path in sorted((storage.state_dir / "pids").glob("webui-*.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        rec["alive"] = _matches(rec)
        out.append(rec)
    return out


def _matches(rec: dict[str, Any]) -> bool:
    """The recorded pid is alive and still runs the recorded command (not a reused pid)."""
    try:
        proc = psutil.Process(int(rec["pid"]))
        return proc.status() != psutil.STATUS_ZOMBIE and proc.cmdline() == rec.get("cmdline")
    except (psutil.Error, KeyError, ValueError, TypeError):
        return False


class WebUIProcess:
    """One running (or last-run) WebUI instance, as seen by this kernel."""

    def __init__(self, name: str, log_path: Path, bus: EventBus | None) -> None:
        self.name, self.log_path, self.bus = name, log_path, bus
        self.state = "stopped"
        self.pid: int | None = None
        self.port: int | None = None
        self.started: float | None = None
        self.exit_code: int | None = None
        self.message = ""
        self.lines: deque[str] = deque(maxlen=TAIL_LINES)
        self.popen: subprocess.Popen[bytes] | None = None
        self.spec: LaunchSpec | None = None
        self._log_pos = 0
        self._follower: asyncio.Task[None] | None = None
        self.stopping = False
        self.restarting = False
        """Between a crash and the automatic relaunch (still "up" for keep-alive loops)."""

    @property
    def url(self) -> str | None:
        return f"http://127.0.0.1:{self.port}" if self.port else None

    def tail(self, n: int = 50) -> list[str]:
        return list(self.lines)[-n:]

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "pid": self.pid, "port": self.port,
                "url": self.url, "started": self.started, "exit_code": self.exit_code,
                "message": self.message, "log": str(self.log_path)}

    def set_state(self, state: str, **data: Any) -> None:
        self.state = state
        if self.bus is not None:
            self.bus.publish(StateEvent(topic=f"webui:{self.name}", key=self.name, state=state,
                                        data={**self.info(), **data}))

    def returncode(self) -> int | None | bool:
        """Exit code when it exited (None if unknown: not our child), False while alive."""
        if self.popen is not None:
            rc = self.popen.poll()
            return False if rc is None else rc
        if self.pid is None:
            return None
        try:
            p = psutil.Process(self.pid)
            return None if p.status() == psutil.STATUS_ZOMBIE else False
        except psutil.NoSuchProcess:
            return None

    def alive(self) -> bool:
        return self.returncode() is False

    def read_new_log(self) -> list[str]:
        """New complete lines of the log file since the last call (into the tail)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_pos)
                data = f.read()
        except OSError:
            return []
        cut = data.rfind(b"\n") + 1
        self._log_pos += cut
        lines = data[:cut].decode("utf-8", errors="replace").splitlines()
        for line in lines:
            self.lines.append(line)
            if self.bus is not None:
                self.bus.publish(LogEvent(topic=f"webui:{self.name}", key=self.name, message=line))
        return lines

    def start_following(self, from_end: bool) -> None:
        if from_end:
            with contextlib.suppress(OSError):
                size = self.log_path.stat().st_size
                # keep the last lines as the tail, like `tail -n`
                with open(self.log_path, "rb") as f:
                    f.seek(max(0, size - 64 * 1024))
                    for line in f.read().decode("utf-8", errors="replace").splitlines()[-200:]:
                        self.lines.append(line)
                self._log_pos = size

        async def follow() -> None:
            while True:
                self.read_new_log()
                await asyncio.sleep(0.2)

        if self._follower is None or self._follower.done():
            self._follower = asyncio.get_running_loop().create_task(follow())

    def stop_following(self) -> None:
        self.read_new_log()
        if self._follower is not None:
            self._follower.cancel()
            self._follower = None


def _listens_on(pid: int | None, port: int | None) -> bool:
    """True unless we can see that the listener on ``port`` is NOT ``pid`` or one of its
    children: another program may grab the port between our spawn and the probe, and its
    answer must not make our WebUI look ready. Unknown (no permission) counts as ours."""
    if pid is None or port is None:
        return True
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
        for p in tree:
            conns = p.net_connections(kind="inet") if hasattr(p, "net_connections") else p.connections(kind="inet")
            if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns):
                return True
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return True
    except psutil.NoSuchProcess:
        return False
    return False


def _process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _gone(p: psutil.Process) -> bool:
    """Exited for good: a zombie counts only once no thread of it runs (a main thread that
    ended while others still serve the port shows as a zombie too)."""
    try:
        if p.status() != psutil.STATUS_ZOMBIE:
            return False
        return len(os.listdir(f"/proc/{p.pid}/task")) <= 1 if os.path.isdir("/proc") else True
    except (psutil.NoSuchProcess, FileNotFoundError):
        return True
    except (psutil.Error, OSError):
        return False


async def probe(url: str, timeout: float = 3.0) -> bool:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s, \
                s.get(url) as r:
            # 404: the server is up but the probed route is not yet (Forge answers
            # /sdapi/v1/* with 404 until it has added its API, after Gradio starts).
            return r.status < 500 and r.status != 404
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return False


class ProcessManager:
    """Starts, watches, stops and re-attaches WebUI processes of one storage root."""

    def __init__(self, storage: StorageRoot, bus: EventBus | None = None, *, crash_limit: int = 3,
                 crash_window: float = 120.0, restart_delay: float = 1.0) -> None:
        self.storage, self.bus = storage, bus
        self.crash_limit, self.crash_window, self.restart_delay = crash_limit, crash_window, restart_delay
        self.procs: dict[str, WebUIProcess] = {}
        self._crashes: dict[str, list[float]] = {}
        self._monitors: dict[str, asyncio.Task[None]] = {}
        self.on_ready: list[Callable[[WebUIProcess], Any]] = []

    def pid_path(self, name: str) -> Path:
        return self.storage.state_path("pids", f"webui-{name}.json")

    def log_path(self, name: str) -> Path:
        return self.storage.state_path("logs", f"webui-{name}.log")

    def get(self, name: str) -> WebUIProcess:
        if name not in self.procs:
            self.procs[name] = WebUIProcess(name, self.log_path(name), self.bus)
        return self.procs[name]

    # ---- start -------------------------------------------------------------------------
    async def start(self, spec: LaunchSpec, *, auto_restart: bool = True, wait: bool = True) -> WebUIProcess:
        """Launch and (with ``wait``) return once the probe answers. Crashes before ready
        are retried up to ``crash_limit`` times within ``crash_window`` seconds."""
        proc = self.get(spec.name)
        if proc.alive():
            raise RuntimeError(f"{spec.name} is already running (pid {proc.pid}, port {proc.port}): "
                               "stop it first or use restart")
        self._crashes[spec.name] = []
        proc.spec = spec
        if not wait:  # spawned now (pid and port known), readiness watched in the background
            self._spawn(proc, spec)
            self._monitors[spec.name] = asyncio.get_running_loop().create_task(
                self._run_until_ready(proc, spec, auto_restart, quiet=True, spawned=True))
            return proc
        await self._run_until_ready(proc, spec, auto_restart)
        return proc

    async def _run_until_ready(self, proc: WebUIProcess, spec: LaunchSpec, auto_restart: bool,
                               quiet: bool = False, spawned: bool = False) -> None:
        while True:
            if not spawned:
                self._spawn(proc, spec)
            spawned = False
            try:
                await self._wait_ready(proc, spec)
            except WebUICrashed as crash:
                crash.cause = start_failure_cause(proc.name, crash.tail)
                # A rejected flag or a missing module fails the same way every time.
                if crash.cause or not self._may_restart(proc, crash, auto_restart):
                    err = self._final_crash(proc, crash, auto_restart)
                    if quiet:
                        return
                    raise err from None
                await asyncio.sleep(self.restart_delay)
                continue
            except asyncio.CancelledError:
                # A background start outlives its caller (`sdpanel launch` without --wait
                # ends its loop right away): the WebUI runs detached, so leave it running.
                if not quiet:
                    await self._kill(proc, 5.0)
                raise
            except BaseException as exc:
                await self._kill(proc, 5.0)
                if quiet and isinstance(exc, Exception):
                    return  # background start: the state event already says what happened
                raise
            self._monitors[spec.name] = asyncio.get_running_loop().create_task(
                self._monitor(proc, auto_restart))
            return

    def _may_restart(self, proc: WebUIProcess, crash: WebUICrashed, auto_restart: bool) -> bool:
        now = time.monotonic()
        recent = [t for t in self._crashes.setdefault(proc.name, []) if now - t < self.crash_window]
        recent.append(now)
        self._crashes[proc.name] = recent
        proc.exit_code = crash.exit_code
        if auto_restart and len(recent) < self.crash_limit:
            proc.restarting = True
            proc.message = f"crashed (exit {crash.exit_code}); restarting ({len(recent)}/{self.crash_limit})"
            proc.set_state("crashed", tail=crash.tail[-20:], restarting=True)
            return True
        return False

    def _final_crash(self, proc: WebUIProcess, crash: WebUICrashed, auto_restart: bool) -> WebUICrashed:
        tries = max(1, len(self._crashes.get(proc.name, [])))
        err = WebUICrashed(proc.name, crash.exit_code, crash.tail, loop=auto_restart and tries > 1,
                           tries=tries, cause=crash.cause)
        proc.exit_code = crash.exit_code
        proc.message = str(err)
        proc.set_state("crashed", tail=crash.tail[-20:], restarting=False, crash_loop=err.loop)
        self.pid_path(proc.name).unlink(missing_ok=True)
        return err

    def _spawn(self, proc: WebUIProcess, spec: LaunchSpec) -> None:
        port = free_port(spec.port)
        argv = [a.replace("{port}", str(port)) for a in spec.argv]
        env = child_env({"PYTHONUNBUFFERED": "1", **spec.env})
        if spec.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(spec.gpu)
        log = proc.log_path
        with open(log, "ab") as f:
            f.write(f"--- sdpanel: starting {spec.name} on port {port}: {' '.join(argv)} "
                    f"({time.strftime('%Y-%m-%d %H:%M:%S')}) ---\n".encode())
        proc.lines.clear()
        proc._log_pos = log.stat().st_size
        with open(log, "ab") as f:
            proc.popen = subprocess.Popen(argv, cwd=spec.webui_dir, stdout=f, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        proc.pid, proc.port, proc.started = proc.popen.pid, port, time.time()
        proc.exit_code, proc.stopping, proc.message, proc.restarting = None, False, "", False
        record = {"name": spec.name, "pid": proc.pid, "port": port, "started": proc.started,
                  "kind": "webui", "log": str(log), "cmdline": argv, "webui_dir": str(spec.webui_dir),
                  "probe": spec.probe, "gpu": spec.gpu}
        self.pid_path(spec.name).write_text(json.dumps(record, indent=1), encoding="utf-8")
        proc.start_following(from_end=False)
        proc.set_state("starting")

    async def _wait_ready(self, proc: WebUIProcess, spec: LaunchSpec) -> None:
        deadline = time.monotonic() + spec.ready_timeout
        url = f"http://127.0.0.1:{proc.port}{spec.probe}"
        while True:
            rc = proc.returncode()
            if rc is not False:
                proc.read_new_log()
                raise WebUICrashed(proc.name, rc if isinstance(rc, int) else None, proc.tail(40))
            if await probe(url, timeout=min(3.0, spec.ready_timeout)) and _listens_on(proc.pid, proc.port):
                proc.set_state("ready")
                for cb in self.on_ready:
                    cb(proc)
                return
            if time.monotonic() > deadline:
                proc.read_new_log()
                last = "\n".join(f"  | {x}" for x in proc.tail(10)) or "  (no output)"
                await self._kill(proc, 5.0)
                proc.message = (f"{proc.name} did not answer {spec.probe} within {spec.ready_timeout:.0f}s; "
                                f"stopped it. Last log lines:\n{last}")
                proc.set_state("crashed", timeout=True)
                raise WebUIStartTimeout(proc.message)
            await asyncio.sleep(0.25)

    async def _monitor(self, proc: WebUIProcess, auto_restart: bool) -> None:
        """Watch a ready process; an exit nobody asked for is a crash (restart by policy)."""
        while True:
            await asyncio.sleep(0.3)
            rc = proc.returncode()
            if rc is False:
                continue
            if proc.stopping or self._stopped_elsewhere(proc):
                proc.stop_following()
                proc.set_state("stopped", elsewhere=not proc.stopping)
                return
            proc.read_new_log()
            crash = WebUICrashed(proc.name, rc if isinstance(rc, int) else None, proc.tail(40))
            if not self._may_restart(proc, crash, auto_restart) or proc.spec is None:
                self._final_crash(proc, crash, auto_restart)
                proc.stop_following()
                return
            await asyncio.sleep(self.restart_delay)
            with contextlib.suppress(WebUICrashed, WebUIStartTimeout):
                await self._run_until_ready(proc, proc.spec, auto_restart)
            return

    def _stopped_elsewhere(self, proc: WebUIProcess) -> bool:
        """Another kernel (or `sdpanel stop`) stopped it: its record is gone or replaced."""
        try:
            rec = json.loads(self.pid_path(proc.name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return True
        return rec.get("pid") != proc.pid

    # ---- stop / restart ------------------------------------------------------------------
    async def stop(self, name: str, timeout: float = 10.0) -> bool:
        """TERM the process group, KILL after ``timeout``. False when it was not running."""
        proc = self.procs.get(name) or await self.attach(name, require_probe=False)
        if proc is None:
            self.pid_path(name).unlink(missing_ok=True)
            return False
        proc.stopping = True
        task = self._monitors.pop(name, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        was_alive = proc.pid is not None and not all(_gone(p) for p in _process_tree(proc.pid))
        await self._kill(proc, timeout)
        proc.stop_following()
        self.pid_path(name).unlink(missing_ok=True)
        rc = proc.returncode()
        proc.exit_code = rc if isinstance(rc, int) else None
        proc.set_state("stopped")
        return was_alive

    async def _kill(self, proc: WebUIProcess, timeout: float) -> None:
        """TERM the group, KILL what is left after ``timeout``; return once every process
        of the tree is gone and the port is free (not when the main thread is a zombie)."""
        if proc.pid is None:
            return
        tree = _process_tree(proc.pid)
        if all(_gone(p) for p in tree):
            return
        proc.stopping = True
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                # start_new_session made it a group leader: the group holds its children too
                os.killpg(proc.pid, sig)
            for p in tree:  # children that left the group
                with contextlib.suppress(psutil.Error):
                    p.send_signal(sig)
            end = time.monotonic() + wait
            while time.monotonic() < end:
                proc.returncode()  # reaps our own child
                if all(_gone(p) for p in tree) and (not proc.port or port_free(proc.port)):
                    return
                await asyncio.sleep(0.1)

    async def restart(self, name: str) -> WebUIProcess:
        proc = self.get(name)
        if proc.spec is None:
            raise RuntimeError(f"{name} was not started by this session: launch it instead")
        await self.stop(name)
        return await self.start(proc.spec)

    # ---- re-attach -------------------------------------------------------------------------
    async def attach(self, name: str, *, require_probe: bool = True) -> WebUIProcess | None:
        """Adopt a WebUI a previous kernel started, if it still runs (and answers)."""
        path = self.pid_path(name)
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not _matches(rec):
            path.unlink(missing_ok=True)  # stale: the process is gone or the pid was reused
            return None
        proc = self.get(name)
        proc.pid, proc.port, proc.started = int(rec["pid"]), int(rec["port"]), float(rec["started"])
        proc.popen = None
        if require_probe and not await probe(f"http://127.0.0.1:{proc.port}{rec.get('probe', '/')}"):
            return None
        proc.start_following(from_end=True)
        proc.set_state("ready", attached=True)
        self._monitors[name] = asyncio.get_running_loop().create_task(self._monitor(proc, False))
        return proc
