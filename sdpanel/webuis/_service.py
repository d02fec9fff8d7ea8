"""The WebUI service: what the Launch panel, notebook cell 4, the CLI and REST call.

Install (package first, git as the fallback, then extensions and the store's links),
launch (linked, on a free port and the chosen GPU, tunnels behind a login), stop, restart,
re-attach, ps and logs — one object per storage root, events on the bus under
``webui:<id>``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdpanel.runtime import EventBus, LogEvent, get_runtime
from sdpanel.storage import StorageRoot

from ._extract import ArchiveError, detect_format
from ._git import ExtensionResult, StepLog, install_extensions, install_git
from ._install import InstallError, InstallResult, Prepare, install_package, installed_info
from ._process import ProcessManager, WebUIProcess, read_records
from ._registry import launch_spec, webui_info, webui_python
from ._tunnels import (
    Tunnel,
    TunnelError,
    jupyter_proxy_url,
    open_tunnel,
    recorded_tunnels,
    stop_recorded_tunnels,
)
from ._venv import prepare_environment

__all__ = ["LaunchResult", "WebUIService", "default_webuis_dir", "keep_alive", "launch_from_settings",
           "webui_service"]


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def default_webuis_dir(storage: StorageRoot) -> Path:
    """Where WebUIs are installed: ``$SDPANEL_WEBUIS_DIR``, else ``<work dir>/webuis``
    (fast local disk), never inside the store (the store's links would loop)."""
    env = os.environ.get("SDPANEL_WEBUIS_DIR")
    if env:
        return Path(env).expanduser().resolve()
    try:
        from sdpanel.platforms import detect_platform

        cand = Path(detect_platform().work_dir).resolve() / "webuis"
    except Exception:  # noqa: BLE001 - detection must not stop a launch
        cand = storage.path.parent / "webuis"
    if _inside(cand, storage.path) or _inside(storage.path, cand):
        cand = storage.path.parent / "webuis"
    return cand


def _has_gpu() -> bool:
    """Whether an NVIDIA GPU is usable (the system monitor's NVML reading)."""
    try:
        from sdpanel.sysmon import SystemMonitor

        return bool(SystemMonitor().sample()["gpu"].get("devices"))
    except Exception:  # noqa: BLE001 - no monitor, no GPU
        return False


@dataclass
class LaunchResult:
    webui: str
    state: str
    local_url: str | None
    port: int | None
    pid: int | None
    jupyter_url: str | None = None
    tunnels: list[dict[str, Any]] = field(default_factory=list)
    """Each: tool, url, user, password (shown once), auth, state."""
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Plain text for headless cells and the CLI (includes the tunnel passwords: this is
        the one place they are shown)."""
        lines = [f"{self.webui}: {self.state} (pid {self.pid}, port {self.port})"]
        if self.local_url:
            lines.append(f"  local:   {self.local_url}")
        if self.jupyter_url:
            lines.append(f"  jupyter: {self.jupyter_url}")
        for t in self.tunnels:
            lines.append(f"  {t['tool']}: {t['url']}  (user {t['user']}, password {t['password']})")
        lines += [f"  error: {e}" for e in self.errors]
        return "\n".join(lines)


class WebUIService:
    def __init__(self, storage: StorageRoot, bus: EventBus | None = None, *,
                 webuis_dir: str | os.PathLike[str] | None = None) -> None:
        self.storage = storage.ensure()
        self.bus = bus or get_runtime().bus
        self.webuis_dir = Path(webuis_dir).resolve() if webuis_dir else default_webuis_dir(storage)
        self.manager = ProcessManager(self.storage, self.bus)
        self.tunnels: dict[str, list[Tunnel]] = {}

    def webui_dir(self, webui: str) -> Path:
        return self.webuis_dir / webui_info(webui).id

    def install_log(self, webui: str) -> Path:
        return self.storage.state_path("logs", f"webui-{webui_info(webui).id}-install.log")

    def _log(self, webui: str, message: str, level: str = "info") -> None:
        self.bus.publish(LogEvent(topic=f"webui:{webui}", key="install", level=level, message=message))  # type: ignore[arg-type]

    # ---- install -------------------------------------------------------------------------
    async def install(self, webui: str, *, source: str | None = None, replace: bool = False,
                      extensions: bool = True, pip_args: Sequence[str] = (),
                      with_pip: bool = True) -> InstallResult:
        """``source``: a package URL (.zip/.tar.zst/.tar.lz4) or a git repository; default:
        the registry's packages, then its repository at the pinned commit."""
        info = webui_info(webui)
        target = self.webui_dir(webui)
        target.parent.mkdir(parents=True, exist_ok=True)
        source = source or _configured_package_url(self.storage)
        packages = [source] if source and _is_package(source) else ([] if source else info.packages)
        result: InstallResult | None = None
        prepare = self._environment_step(webui, pip_args)
        for url in packages:
            try:
                # No version: the marker records what the package really holds.
                result = await install_package(url, target, webui=info.id, bus=self.bus,
                                               replace=replace, prepare=prepare)
                break
            except (InstallError, ArchiveError, OSError) as exc:
                if source:
                    raise
                self._log(info.id, f"package {url} failed ({exc}); trying the next source", "warning")
        if result is None:
            repo, ref, commit = info.repository, info.ref, info.commit
            if source and not _is_package(source):  # a user's repository: URL[#ref]
                repo, _, frag = source.partition("#")
                ref, commit = frag or None, None
            result = await install_git(repo, target, webui=info.id, ref=ref, commit=commit,
                                       bus=self.bus, log_path=self.install_log(webui), venv=False,
                                       requirements=(), replace=replace, prepare=prepare)
        if extensions and info.extensions:
            res = await self.install_extensions(webui, pip_args=pip_args)
            result.notes += [f"extension {r.name}: {'; '.join(r.notes) or r.action if r.ok else r.error}"
                             for r in res]
        self.link(webui)
        return result

    def _environment_step(self, webui: str, pip_args: Sequence[str]) -> Prepare:
        """The venv + start-check step both install paths run before the marker."""
        info = webui_info(webui)
        settings = _settings(self.storage)
        log = StepLog(self.install_log(webui), self.bus, f"webui:{info.id}")

        async def prepare(staging: Path) -> list[str]:
            return await prepare_environment(
                staging, label=info.label, log=log, requirements=info.requirements,
                extra=info.extra_requirements, torch_spec=getattr(settings, "webui_torch", "") or info.torch,
                smoke=info.smoke_test, python=getattr(settings, "webui_python", ""), pip_args=pip_args,
                drop=info.requirements_drop)

        return prepare

    async def install_extensions(self, webui: str, names: Sequence[str] | None = None,
                                 pip_args: Sequence[str] = ()) -> list[ExtensionResult]:
        info = webui_info(webui)
        exts = [e for e in info.extensions if names is None or e.name in names]
        wd = self.webui_dir(webui)
        return await install_extensions(wd, exts, extensions_dir=info.extensions_dir,
                                        python=webui_python(wd, getattr(_settings(self.storage), "webui_python", "")),
                                        bus=self.bus, webui=info.id,
                                        log_path=self.install_log(webui), pip_args=pip_args)

    def link(self, webui: str) -> Any:
        from sdpanel.storage import link_webui

        rep = link_webui(self.storage, self.webui_dir(webui), webui_info(webui).id)
        for w in rep.warnings + rep.errors:
            self._log(webui, w, "warning")
        return rep

    def uninstall(self, webui: str) -> bool:
        wd = self.webui_dir(webui)
        if self.manager.get(webui_info(webui).id).alive():
            raise RuntimeError(f"{webui} is running: stop it first")
        if not wd.exists():
            return False
        shutil.rmtree(wd)
        return True

    # ---- launch / stop --------------------------------------------------------------------
    async def launch(self, webui: str, *, gpu: int | None = None, port: int | None = None,
                     args: str | Sequence[str] = "", tunnels: Sequence[str] = (), wait: bool = True,
                     cpu: bool | None = None, env: dict[str, str] | None = None,
                     ready_timeout: float = 600.0, jupyter_base_url: str | None = None) -> LaunchResult:
        info = webui_info(webui)
        wd = self.webui_dir(webui)
        if installed_info(wd) is None:
            raise InstallError(f"{info.label} is not installed at {wd}: install it first "
                               f"(`sdpanel install {info.id}` or the Install button)")
        existing = await self.manager.attach(info.id)
        if existing is None:
            self.link(webui)  # models added since the install appear
            spec = launch_spec(info.id, wd, port=port, gpu=gpu, args=list(args) if not isinstance(args, str) else args,
                               cpu=not _has_gpu() if cpu is None else cpu, env=env,
                               ready_timeout=ready_timeout, outputs=self.storage.outputs_dir,
                               python=getattr(_settings(self.storage), "webui_python", ""))
            proc = await self.manager.start(spec, wait=wait)
        else:
            proc = existing
        result = self._result(info.id, proc, jupyter_base_url)
        for tool in tunnels:
            if tool in ("", "none"):
                continue
            try:
                t = await open_tunnel(tool, proc.port or 0, storage=self.storage, name=info.id, bus=self.bus)
            except (TunnelError, OSError) as exc:
                result.errors.append(f"{tool}: {exc}")
                continue
            self.tunnels.setdefault(info.id, []).append(t)
            result.tunnels.append({**t.public_dict(), "password": t.password})
        return result

    def _result(self, webui: str, proc: WebUIProcess, base: str | None) -> LaunchResult:
        if base is None and _jupyter_proxy_available():
            base = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
        return LaunchResult(webui=webui, state=proc.state, local_url=proc.url, port=proc.port, pid=proc.pid,
                            jupyter_url=jupyter_proxy_url(base, proc.port) if base and proc.port else None,
                            tunnels=[t.public_dict() for t in self.tunnels.get(webui, [])])

    async def stop(self, webui: str, timeout: float = 10.0) -> bool:
        wid = webui_info(webui).id
        for t in self.tunnels.pop(wid, []):
            await t.stop()
        stop_recorded_tunnels(self.storage, wid)  # left by another process (CLI, old kernel)
        return await self.manager.stop(wid, timeout=timeout)

    async def restart(self, webui: str) -> WebUIProcess:
        return await self.manager.restart(webui_info(webui).id)

    async def attach_all(self) -> list[WebUIProcess]:
        """Re-attach to every WebUI a previous kernel left running."""
        found = []
        for rec in read_records(self.storage):
            if rec.get("alive"):
                proc = await self.manager.attach(str(rec["name"]))
                if proc is not None:
                    found.append(proc)
        return found

    def ps(self) -> list[dict[str, Any]]:
        out = []
        for rec in read_records(self.storage):
            live = self.manager.procs.get(str(rec["name"]))
            rec["state"] = live.state if live else ("running" if rec["alive"] else "stale")
            rec["tunnels"] = ([t.public_dict() for t in self.tunnels.get(str(rec["name"]), [])]
                              or recorded_tunnels(self.storage, str(rec["name"])))
            out.append(rec)
        return out

    def logs(self, webui: str, lines: int = 200) -> list[str]:
        wid = webui_info(webui).id
        proc = self.manager.procs.get(wid)
        if proc is not None and proc.lines:
            proc.read_new_log()
            return proc.tail(lines)
        path = self.manager.log_path(wid)
        if not path.exists():
            return []
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 256 * 1024))
            return f.read().decode("utf-8", errors="replace").splitlines()[-lines:]


def _settings(storage: StorageRoot) -> Any:
    """The store's settings, None when they do not load (a bad setting elsewhere is
    reported where it is used, not here)."""
    from sdpanel.settings import load_settings

    try:
        return load_settings(storage.path)
    except ValueError:
        return None


def _configured_package_url(storage: StorageRoot) -> str | None:
    """The ``webui_package_url`` setting (``SDPANEL_WEBUI_PACKAGE_URL``: a mirror or a local
    server), used when an install names no source."""
    return getattr(_settings(storage), "webui_package_url", "") or None


def _is_package(source: str) -> bool:
    try:
        detect_format(source)
        return True
    except ArchiveError:
        return False


def _jupyter_proxy_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("jupyter_server_proxy") is not None and "JPY_SESSION_NAME" in os.environ


def webui_service(storage: StorageRoot | str | os.PathLike[str]) -> WebUIService:
    """The runtime's WebUI service for ``storage`` (one per process and store)."""
    root = storage if isinstance(storage, StorageRoot) else StorageRoot.at(storage)
    rt = get_runtime()
    return rt.service(f"webuis:{root.path}", lambda: WebUIService(root, rt.bus))  # type: ignore[no-any-return]


def launch_from_settings(settings: Any, storage: StorageRoot | str | os.PathLike[str], *,
                         install: bool = True, wait: bool = True,
                         jupyter_base_url: str | None = None) -> LaunchResult:
    """Notebook cell 4 / headless: install ``settings.webui`` when missing, launch it with
    the settings' GPU, port, arguments and tunnel, and (``wait``) block until ready.
    Runs on the runtime loop, so the WebUI's watchers keep running after the cell ends."""
    svc = webui_service(storage)
    webui = settings.webui

    async def go() -> LaunchResult:
        if install and installed_info(svc.webui_dir(webui)) is None:
            await svc.install(webui)
        return await svc.launch(webui, gpu=settings.gpu_index, port=settings.webui_port or None,
                                args=settings.launch_args, tunnels=[settings.tunnel], wait=wait,
                                jupyter_base_url=jupyter_base_url)

    return get_runtime().submit(go(), name=f"launch {webui}", topic=f"webui:{webui}").wait()


def keep_alive(webui: str, storage: StorageRoot | str | os.PathLike[str], poll: float = 5.0) -> int | None:
    """Block while the WebUI runs (hosted notebooks idle out otherwise); returns its exit
    code when it stops or crashes for good (None when unknown)."""
    import time

    proc = webui_service(storage).manager.get(webui_info(webui).id)
    while proc.alive() or proc.restarting:
        time.sleep(poll)
    return proc.exit_code
