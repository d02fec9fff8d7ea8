"""Install a WebUI from git (the fallback when no package fits) and its extensions.

Each step's output goes to the install log (``<storage>/.sdpanel/logs/webui-<name>-install.log``)
and to the bus as log lines, so a failed step can be read in full. Like a package install,
everything happens in ``<target>.installing`` and the marker is written last.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sdpanel._childenv import child_env
from sdpanel._network import NETWORK_FIX, cause_from_output
from sdpanel.runtime import EventBus, LogEvent, StateEvent

from ._install import InstallResult, Prepare, check_target, finish_install, staging_dir
from ._registry import Extension

__all__ = ["ExtensionResult", "StepError", "StepLog", "install_extensions", "install_git", "pip_extension_args",
           "remove_extension", "update_extension"]


class StepError(RuntimeError):
    """A command of an install failed. The first line is one sentence of cause and fix
    (what panels and the CLI show first); the command's last lines follow it."""

    def __init__(self, step: str, code: int, tail: list[str]) -> None:
        self.step, self.code, self.tail = step, code, tail
        cause = cause_from_output(tail)
        if cause is None:
            head = f"{step} failed (exit {code}): the cause is in its last lines below."
        elif cause.startswith("no network"):
            head = f"{step} failed (exit {code}): {cause}; {NETWORK_FIX}."
        else:
            head = f"{step} failed (exit {code}): {cause}; fix that, then retry."
        lines = "\n".join(f"  | {x}" for x in tail[-12:]) or "  (no output)"
        super().__init__(f"{head}\nLast output:\n{lines}")


class StepLog:
    """Runs commands, appending their output to a log file and the bus."""

    def __init__(self, log_path: Path | None, bus: EventBus | None, topic: str, key: str = "install") -> None:
        self.log_path, self.bus, self.topic, self.key = log_path, bus, topic, key
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, line: str, level: str = "info") -> None:
        from sdpanel.settings import redact

        line = redact(line)
        if self.log_path is not None:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        if self.bus is not None:
            self.bus.publish(LogEvent(topic=self.topic, key=self.key, level=level, message=line))  # type: ignore[arg-type]

    async def run(self, step: str, argv: Sequence[str], cwd: Path | None = None,
                  env: dict[str, str] | None = None) -> list[str]:
        self.write(f"$ {' '.join(argv)}")
        tail: deque[str] = deque(maxlen=200)
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            env=child_env({"GIT_TERMINAL_PROMPT": "0", **(env or {})}))
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip()
            tail.append(line)
            self.write(line)
        code = await proc.wait()
        if code != 0:
            self.write(f"{step} failed with exit code {code}", "error")
            raise StepError(step, code, list(tail))
        return list(tail)


async def _clone(log: StepLog, url: str, dest: Path, *, ref: str | None, commit: str | None) -> str:
    """Shallow checkout of ``commit`` (or ``ref``'s tip): init + fetch --depth 1 works for
    commits too, where ``clone --branch`` only takes branch and tag names."""
    dest.mkdir(parents=True, exist_ok=True)
    git = ["git", "-c", "advice.detachedHead=false", "-C", str(dest)]
    await log.run("git init", [*git, "init", "-q"])
    await log.run("git remote", [*git, "remote", "add", "origin", url])
    await log.run("git fetch", [*git, "fetch", "--depth", "1", "origin", commit or ref or "HEAD"])
    await log.run("git checkout", [*git, "checkout", "-q", "FETCH_HEAD"])
    return (await log.run("git rev-parse", [*git, "rev-parse", "HEAD"]))[-1].strip()


async def _requirements(log: StepLog, python: str, files: Sequence[Path], pip_args: Sequence[str]) -> None:
    for req in files:
        if not req.is_file() or not req.read_text(encoding="utf-8", errors="replace").strip():
            continue
        uv = shutil.which("uv")
        if uv:
            argv = [uv, "pip", "install", "--python", python, "-r", str(req), *pip_args]
        else:
            argv = [sys.executable, "-m", "pip", "--python", python, "install",
                    "--disable-pip-version-check", "-r", str(req), *pip_args]
        await log.run(f"installing {req.name}", argv, cwd=req.parent)


async def install_git(repository: str, target: str | os.PathLike[str], *, webui: str = "webui",
                      ref: str | None = None, commit: str | None = None, bus: EventBus | None = None,
                      log_path: Path | None = None, venv: bool = True, with_pip: bool = True,
                      requirements: Sequence[str] = ("requirements.txt",),
                      pip_args: Sequence[str] = (), replace: bool = False,
                      prepare: Prepare | None = None) -> InstallResult:
    """Shallow clone at the pinned commit, a venv, its requirements (uv when present).
    With ``prepare`` (the service's venv step) pass ``venv=False``: it makes the venv."""
    target = Path(target).expanduser().resolve()
    check_target(target, replace)
    staging = staging_dir(target)
    shutil.rmtree(staging, ignore_errors=True)
    topic = f"webui:{webui}"
    log = StepLog(log_path, bus, topic)
    if bus:
        bus.publish(StateEvent(topic=topic, key=webui, state="installing", data={"source": repository}))
    started = time.monotonic()
    try:
        head = await _clone(log, repository, staging, ref=ref, commit=commit)
        if commit and not head.startswith(commit):
            raise StepError("git checkout", 1, [f"got {head}, expected pinned commit {commit}"])
        python = sys.executable
        if venv:
            # Made at the final path's name later; venv paths are fixed up by finish_install.
            argv = [sys.executable, "-m", "venv", str(staging / "venv")]
            if not with_pip:
                argv.append("--without-pip")
            await log.run("creating the venv", argv)
            python = str(staging / "venv" / "bin" / "python")
        await _requirements(log, python, [staging / r for r in requirements], pip_args)
        result = InstallResult(webui=webui, path=str(target), method="git", source=repository,
                               version=head, commit=head)
        if prepare is not None:
            result.notes += await prepare(staging)
        result.seconds = round(time.monotonic() - started, 3)
        finish_install(staging, target, result, replace=replace, bus=bus)
        log.write(f"installed {webui} {result.version} at {target} (commit {head[:12]})")
        if bus:
            bus.publish(StateEvent(topic=topic, key=webui, state="installed", data={"path": str(target)}))
        return result
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if bus and isinstance(exc, Exception):
            bus.publish(StateEvent(topic=topic, key=webui, state="failed", data={"error": str(exc)}))
        raise


# ---- extensions / custom nodes ---------------------------------------------------------------

@dataclass
class ExtensionResult:
    name: str
    ok: bool
    action: str
    error: str = ""
    commit: str = ""
    notes: list[str] = field(default_factory=list)


def _ext_dir(webui_dir: Path, extensions_dir: str, name: str) -> Path:
    base = (webui_dir / extensions_dir).resolve()
    path = (base / name).resolve()
    if path.parent != base or not name or name.startswith("."):
        raise ValueError(f"Bad extension name {name!r}: it must be a plain folder name")
    return path


async def install_extensions(webui_dir: str | os.PathLike[str], extensions: Sequence[Extension], *,
                             extensions_dir: str = "custom_nodes", python: str | None = None,
                             bus: EventBus | None = None, webui: str = "webui",
                             log_path: Path | None = None, parallel: int = 4,
                             pip_args: Sequence[str] = ()) -> list[ExtensionResult]:
    """Install each extension (shallow clone + its requirements) in parallel. A failure is
    reported by name in its result and never stops the others."""
    wd = Path(webui_dir).resolve()
    sem = asyncio.Semaphore(parallel)

    async def one(ext: Extension) -> ExtensionResult:
        async with sem:
            log = StepLog(log_path, bus, f"webui:{webui}", key=f"extension:{ext.name}")
            if ext.pip:
                return await _install_pip_extension(log, wd, ext, python or sys.executable, pip_args)
            try:
                dest = _ext_dir(wd, extensions_dir, ext.name)
                if (dest / ".git").is_dir():
                    return ExtensionResult(ext.name, True, "present")
                tmp = dest.with_name(dest.name + ".installing")
                shutil.rmtree(tmp, ignore_errors=True)
                try:
                    head = await _clone(log, ext.url, tmp, ref=ext.ref, commit=ext.commit)
                    await _requirements(log, python or sys.executable, [tmp / "requirements.txt"], pip_args)
                    tmp.rename(dest)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                return ExtensionResult(ext.name, True, "installed", commit=head)
            except Exception as exc:  # noqa: BLE001 - reported by name, never fatal
                log.write(f"extension {ext.name} failed: {exc}", "error")
                return ExtensionResult(ext.name, False, "install", error=str(exc))

    return list(await asyncio.gather(*(one(e) for e in extensions)))


PIP_EXTENSIONS_FILE = ".sdpanel-pip-extensions.json"


async def _install_pip_extension(log: StepLog, wd: Path, ext: Extension, python: str,
                                 pip_args: Sequence[str]) -> ExtensionResult:
    """A pip-packaged extension (ComfyUI-Manager): the WebUI's own requirements file for it
    into its Python, then recorded so launches add ``launch_args``."""
    import json

    req = wd / ext.requirements
    if not req.is_file():
        note = (f"{ext.name} skipped: this {wd.name} has no {ext.requirements} (it needs a "
                f"version with {' '.join(ext.launch_args) or ext.pip})")
        log.write(note, "warning")
        return ExtensionResult(ext.name, True, "skipped", notes=[note])
    try:
        await log.run(f"installing {ext.pip}", [python, "-m", "pip", "install", "--disable-pip-version-check",
                                                "-r", str(req), *pip_args], cwd=wd)
    except StepError as exc:
        return ExtensionResult(ext.name, False, "install", error=str(exc))
    path = wd / PIP_EXTENSIONS_FILE
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    known[ext.name] = {"pip": ext.pip, "launch_args": ext.launch_args}
    path.write_text(json.dumps(known, indent=1), encoding="utf-8")
    return ExtensionResult(ext.name, True, "installed", notes=[f"enabled with {' '.join(ext.launch_args)}"])


def pip_extension_args(webui_dir: Path) -> list[str]:
    """The launch arguments of the pip extensions installed into ``webui_dir``."""
    import json

    try:
        known = json.loads((webui_dir / PIP_EXTENSIONS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [a for entry in known.values() for a in entry.get("launch_args", [])]


async def update_extension(webui_dir: str | os.PathLike[str], name: str, *,
                           extensions_dir: str = "custom_nodes", ref: str | None = None,
                           bus: EventBus | None = None, webui: str = "webui",
                           log_path: Path | None = None) -> ExtensionResult:
    """Move a (shallow) extension checkout to the tip of ``ref`` (default: remote HEAD)."""
    dest = _ext_dir(Path(webui_dir).resolve(), extensions_dir, name)
    log = StepLog(log_path, bus, f"webui:{webui}", key=f"extension:{name}")
    git = ["git", "-C", str(dest)]
    try:
        await log.run("git fetch", [*git, "fetch", "--depth", "1", "origin", ref or "HEAD"])
        await log.run("git reset", [*git, "reset", "-q", "--hard", "FETCH_HEAD"])
        head = (await log.run("git rev-parse", [*git, "rev-parse", "HEAD"]))[-1].strip()
        return ExtensionResult(name, True, "updated", commit=head)
    except Exception as exc:  # noqa: BLE001
        return ExtensionResult(name, False, "update", error=str(exc))


def remove_extension(webui_dir: str | os.PathLike[str], name: str, *,
                     extensions_dir: str = "custom_nodes") -> ExtensionResult:
    dest = _ext_dir(Path(webui_dir).resolve(), extensions_dir, name)
    if not dest.exists():
        return ExtensionResult(name, False, "remove", error=f"{name} is not installed")
    shutil.rmtree(dest)
    return ExtensionResult(name, True, "removed")
