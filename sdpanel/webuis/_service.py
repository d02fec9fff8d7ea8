"""The WebUI service: what the Launch panel, notebook cell 4, the CLI and REST call.

Install (package first, git as the fallback, then extensions and the store's links),
launch (linked, on a free port and the chosen GPU, tunnels behind a login), stop, restart,
re-attach, ps and logs — one object per storage root, events on the bus under
``webui:<id>``.
"""

from __future__ import annotations

import asyncio
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
from ._install import (
    MARKER,
    InstallError,
    InstallResult,
    Prepare,
    install_package,
    installed_info,
    record_in_marker,
)
from ._process import ProcessManager, WebUIProcess, read_records
from ._registry import WebUIInfo, launch_spec, prebuilt_repo, webui_info, webui_python
from ._tunnels import (
    Tunnel,
    TunnelError,
    jupyter_proxy_url,
    open_tunnel,
    recorded_tunnels,
    stop_recorded_tunnels,
)
from ._update import MoveResult, checkout_head, update_checkouts
from ._venv import prepare_environment, smoke_test
from ._venv_archive import (
    ensure_venv_archive,
    hf_base,
    link_venv,
    prebuilt_url,
    shared_venv_home,
)

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
        """``source``: a package URL (.zip/.tar.zst/.tar.lz4) or a git repository, tried
        alone. Default, in order: the registry's prebuilt package + venv archive (Hugging
        Face repo, mirror from the HF base URL setting / ``HF_ENDPOINT``), the
        ``webui_package_url`` setting, the registry's package URLs, then git + a built venv.
        Each source skipped is logged with its reason and kept in the install marker."""
        info = webui_info(webui)
        target = self.webui_dir(webui)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source:
            result = (await self._install_package_and_venv(info, source, None, replace, pip_args, with_pip)
                      if _is_package(source) else await self._install_git(info, source, replace, pip_args, with_pip))
        else:
            result = await self._install_from_registry(info, replace, pip_args, with_pip)
        if extensions and info.extensions:
            res = await self.install_extensions(webui, pip_args=pip_args)
            result.notes += [f"extension {r.name}: {'; '.join(r.notes) or r.action if r.ok else r.error}"
                             for r in res]
        self.link(webui)
        return result

    async def _install_from_registry(self, info: WebUIInfo, replace: bool, pip_args: Sequence[str],
                                     with_pip: bool) -> InstallResult:
        skipped: list[str] = []

        def skip(what: str, exc: BaseException) -> None:
            reason = f"{what} failed: {exc}"
            skipped.append(reason)
            self._log(info.id, f"{reason}; trying the next source", "warning")

        result: InstallResult | None = None
        if info.prebuilt:
            base = hf_base(self.storage.path)
            pkg = prebuilt_url(base, prebuilt_repo(), info.prebuilt["package"])
            venv = prebuilt_url(base, prebuilt_repo(), info.prebuilt["venv"])
            try:
                result = await self._install_package_and_venv(info, pkg, venv, replace, pip_args, with_pip)
            except (InstallError, ArchiveError, OSError) as exc:
                skip(f"prebuilt package {info.prebuilt['package']} ({base})", exc)
        configured = _configured_package_url(self.storage)
        if result is None and configured:
            try:  # the user's own package: its failure is theirs to fix, so it stops here
                result = await self._install_package_and_venv(info, configured, None, replace, pip_args, with_pip)
            except (InstallError, ArchiveError, OSError) as exc:
                raise InstallError(f"{exc} (the webui_package_url setting; "
                                   f"{'; '.join(skipped) or 'no other source tried'})") from exc
        for url in info.packages if result is None else []:
            try:
                result = await self._install_package_and_venv(info, url, None, replace, pip_args, with_pip)
            except (InstallError, ArchiveError, OSError) as exc:
                skip(f"package {url}", exc)
        if result is None:
            result = await self._install_git(info, None, replace, pip_args, with_pip)
        result.notes[:0] = skipped
        record_in_marker(Path(result.path), sources_skipped=skipped)
        return result

    async def _install_git(self, info: WebUIInfo, source: str | None, replace: bool,
                           pip_args: Sequence[str], with_pip: bool) -> InstallResult:
        repo, ref, commit = info.repository, info.ref, info.commit
        if source:  # a user's repository: URL[#ref]
            repo, _, frag = source.partition("#")
            ref, commit = frag or None, None
        result = await install_git(repo, self.webui_dir(info.id), webui=info.id, ref=ref, commit=commit,
                                   bus=self.bus, log_path=self.install_log(info.id), venv=False,
                                   requirements=(), replace=replace,
                                   prepare=self._environment_step(info.id, pip_args, with_pip))
        record_in_marker(Path(result.path), ref=ref or "")  # what `update` follows
        return result

    async def _install_package_and_venv(self, info: WebUIInfo, url: str, venv_url: str | None, replace: bool,
                                        pip_args: Sequence[str], with_pip: bool) -> InstallResult:
        """The package, streamed; beside it (same time) the venv archive ``venv_url``,
        shared with the WebUIs naming it. When that archive cannot serve (its Python is
        missing here, a broken archive) a venv is built instead."""
        target = self.webui_dir(info.id)
        topic = f"webui:{info.id}"
        venv_task: asyncio.Task[tuple[Path, bool]] | None = None
        if venv_url:
            archive = info.prebuilt["venv"]
            venv_task = asyncio.ensure_future(ensure_venv_archive(
                venv_url, shared_venv_home(self.webuis_dir, archive), archive=archive, topic=topic, bus=self.bus))
        try:
            # Without a venv archive, the venv + start check run before the marker; with
            # one, after the archive is linked in (below).
            result = await install_package(url, target, webui=info.id, bus=self.bus, replace=replace,
                                           prepare=None if venv_url else self._environment_step(info.id, pip_args, with_pip))
        except BaseException:
            if venv_task is not None:  # no package, no use for its venv now
                venv_task.cancel()
                await asyncio.gather(venv_task, return_exceptions=True)
            raise
        head = await checkout_head(target)
        if head is not None:  # the package's own .git says what it really is
            result.version = head[0]
            record_in_marker(target, version=head[0], ref=head[1])
        if venv_task is None:
            return result  # the environment step ran inside install_package
        try:
            venv, fetched = await venv_task
        except (InstallError, ArchiveError, OSError) as exc:
            venv_problem = str(exc)
            self._log(info.id, f"venv archive {info.prebuilt['venv']} skipped: {exc}", "warning")
        else:
            if link_venv(target, venv):
                await self._start_check(info, target, str(venv / "bin" / "python"))
                record_in_marker(target, venv=str(venv), venv_archive=info.prebuilt["venv"])
                result.notes.append(f"venv: {info.prebuilt['venv']} at {venv} "
                                    f"({'fetched' if fetched else 'shared copy, not fetched again'})")
            else:
                self._log(info.id, "the package holds its own venv: the venv archive is kept for "
                          "other WebUIs but not used here")
            return result
        self._log(info.id, f"preparing its Python ({venv_problem})")
        try:
            result.notes += await self._environment_step(info.id, pip_args, with_pip)(target)
        except BaseException:
            (target / MARKER).unlink(missing_ok=True)  # no working Python: not installed
            raise
        record_in_marker(target, venv=str(target / "venv"), venv_built=venv_problem)
        result.notes.append(f"venv built here ({venv_problem})")
        return result

    async def _start_check(self, info: WebUIInfo, target: Path, python: str) -> None:
        """The WebUI's own start check on a linked venv; a failure leaves it not installed."""
        if not info.smoke_test:
            return
        log = StepLog(self.install_log(info.id), self.bus, f"webui:{info.id}")
        try:
            await smoke_test(log, [python if a == "{python}" else a for a in info.smoke_test], target,
                             info.label)
        except BaseException:
            (target / MARKER).unlink(missing_ok=True)
            raise

    def _environment_step(self, webui: str, pip_args: Sequence[str], with_pip: bool = True) -> Prepare:
        """The venv + start-check step both install paths run before the marker."""
        info = webui_info(webui)
        settings = _settings(self.storage)
        log = StepLog(self.install_log(webui), self.bus, f"webui:{info.id}")

        async def prepare(staging: Path) -> list[str]:
            return await prepare_environment(
                staging, label=info.label, log=log, requirements=info.requirements,
                extra=info.extra_requirements, torch_spec=getattr(settings, "webui_torch", "") or info.torch,
                smoke=info.smoke_test, python=getattr(settings, "webui_python", ""), pip_args=pip_args,
                drop=info.requirements_drop, packages=with_pip)

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

    async def update(self, webui: str, *, ref: str | None = None, extensions: bool = True) -> list[MoveResult]:
        """Update the WebUI along the ref it follows (``ref`` given: switch to that tag,
        branch or commit instead) keeping local changes; updating also moves its git
        extensions to their tips. The first result is the WebUI's own."""
        info = webui_info(webui)
        if self.manager.get(info.id).alive():
            raise RuntimeError(f"{info.label} is running: stop it before updating or switching it")
        wd = self.webui_dir(webui)
        marker = installed_info(wd) or {}
        return await update_checkouts(wd, webui=info.id, target=ref, follow=marker.get("ref") or info.ref,
                                      extensions_dir=info.extensions_dir, extensions=extensions,
                                      bus=self.bus, log_path=self.install_log(webui))

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
