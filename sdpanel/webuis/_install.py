"""Install a WebUI from a package archive, unpacking while it downloads.

The bytes go from aiohttp straight into the extractor thread (``_extract``); nothing is
saved as a temporary archive. Everything lands in ``<target>.installing``; only when the
archive was complete and valid, the venv fixed and the marker written is that folder
renamed to ``<target>``. So an interrupted or refused install never looks installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from sdpanel._network import NETWORK_FIX, network_cause
from sdpanel.runtime import EventBus, LogEvent, ProgressEvent, StateEvent
from sdpanel.storage import ensure_free_space

from ._extract import ByteQueue, ExtractLimits, ExtractReport, detect_format, extract_stream
from ._relocate import find_venvs, fix_relocated_venv, inside_install, rewrite_file

__all__ = ["MARKER", "InstallError", "InstallResult", "check_target", "finish_install", "install_package",
           "installed_info", "installed_version", "record_in_marker", "staging_dir",
           "stream_archive"]

MARKER = ".sdpanel-installed"
# Unpacked size / archive size, used for the free-space check when no size is given.
_RATIO = {"zip": 2.5, "tar.zst": 4.0, "tar.lz4": 3.0, "tar.gz": 3.5, "tar": 1.0}
_CHUNK = 1 << 20
Prepare = Callable[[Path], Awaitable[list[str]]]
"""A step run on the staging folder before the marker (notes for the result)."""


class InstallError(RuntimeError):
    """An install step failed; the message says which and what to do."""


@dataclass
class InstallResult:
    webui: str
    path: str
    method: str
    source: str
    version: str = ""
    commit: str = ""
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def staging_dir(target: Path) -> Path:
    return target.with_name(target.name + ".installing")


def installed_info(webui_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The install marker's content, or None when ``webui_dir`` is not a complete install."""
    marker = Path(webui_dir) / MARKER
    try:
        return dict(json.loads(marker.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def record_in_marker(webui_dir: Path, **fields: Any) -> None:
    """Add ``fields`` to the WebUI's install marker (what is really there)."""
    marker = Path(webui_dir) / MARKER
    data = json.loads(marker.read_text(encoding="utf-8"))
    data.update(fields)
    marker.write_text(json.dumps(data, indent=1), encoding="utf-8")


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _emit(bus: EventBus | None, event: Any) -> None:
    if bus is not None:
        bus.publish(event)


def _hoist_single_top(staging: Path) -> None:
    """Packages usually hold one top folder (``ComfyUI/...``): make its content the root."""
    entries = [p for p in staging.iterdir()]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        top = entries[0]
        tmp = staging.with_name(staging.name + ".top")
        top.rename(tmp)
        staging.rmdir()
        tmp.rename(staging)


_VERSION_FILES = (("comfyui_version.py", re.compile(r"""__version__\s*=\s*['"]([^'"]+)['"]""")),
                  # Forge: its launcher prints "f" + this + "-" + A1111's git tag.
                  ("modules_forge/forge_version.py", re.compile(r"""^version\s*=\s*['"]([^'"]+)['"]""", re.M)))


def installed_version(root: Path) -> str:
    """What is really installed: the WebUI's own version file (ComfyUI's
    ``comfyui_version.py``, Forge's ``modules_forge/forge_version.py``), else ``git describe``
    of its checkout; "" when neither says."""
    for name, pattern in _VERSION_FILES:
        with contextlib.suppress(OSError):
            m = pattern.search((root / name).read_text(encoding="utf-8", errors="replace"))
            if m:
                return m.group(1)
    return _git(root, "describe", "--tags", "--always")


def _git(root: Path, *args: str) -> str:
    if not (root / ".git").exists():
        return ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=30, check=False)
        if done.returncode == 0:
            return done.stdout.strip()
    return ""


def check_target(target: Path, replace: bool) -> None:
    """Refuse before any download when ``target`` exists and may not be replaced."""
    if (target.exists() or target.is_symlink()) and not replace:
        raise InstallError(f"{target} already exists: pass replace=True (CLI: --force) to "
                           "reinstall over it")


def finish_install(staging: Path, target: Path, result: InstallResult, *, replace: bool,
                   bus: EventBus | None = None) -> InstallResult:
    """Fix venvs, write the marker, then swap ``staging`` into place (the last step)."""
    topic = f"webui:{result.webui}"
    for venv in find_venvs(staging):
        # Fix at the final path: venv paths are absolute, so point them at ``target``.
        notes = fix_relocated_venv_at(venv, staging, target)
        result.notes.extend(notes)
        for note in notes:
            _emit(bus, LogEvent(topic=topic, key="install", message=note))
    result.path = str(target)
    # What is really there beats what was asked for (a registry ref, a package's name).
    result.commit = result.commit or _git(staging, "rev-parse", "HEAD")
    found = installed_version(staging)
    bare_sha = bool(result.commit) and result.commit.startswith(found)  # describe without a tag
    if found and not (bare_sha and result.version):
        result.version = found
    (staging / MARKER).write_text(json.dumps({**asdict(result), "installed": time.time()}, indent=1),
                                  encoding="utf-8")
    old: Path | None = None
    if target.exists() or target.is_symlink():
        check_target(target, replace)
        old = target.with_name(f"{target.name}.old-{int(time.time())}")
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return result


def fix_relocated_venv_at(venv: Path, staging: Path, target: Path) -> list[str]:
    """Fix ``venv`` (still in ``staging``) for where it will live after the final rename:
    fix it in place, then rewrite the staging path to the target path (the target may
    still hold the old install, so the venv cannot be fixed at its final place). Nothing
    outside ``staging`` is written: see ``inside_install``."""
    notes = fix_relocated_venv(venv, staging)
    staged, final = str(staging.resolve()), str(target.resolve())
    cfg = inside_install(staging, venv / "pyvenv.cfg")
    rewrite_file(cfg, cfg.read_text(encoding="utf-8").replace(staged, final).encode("utf-8"))
    for script in (venv / "bin").iterdir():
        st = os.lstat(script)
        if stat.S_ISREG(st.st_mode) and st.st_size < 4 << 20:
            data = inside_install(staging, script).read_bytes()
            if staged.encode() in data[:4096]:
                rewrite_file(script, data.replace(staged.encode(), final.encode()))
    return [n.replace(staged, final) for n in notes]


def _wire_bytes(resp: aiohttp.ClientResponse, total: int | None) -> int:
    """Bytes received as sent (before any Content-Encoding is undone), so ``done`` counts
    what ``Content-Length`` counts and never passes it."""
    # aiohttp < 3.12 has no total_raw_bytes (and decodes before counting): clamp then.
    raw = int(getattr(resp.content, "total_raw_bytes", resp.content.total_bytes))
    return min(raw, total) if total is not None else raw


@dataclass
class Streamed:
    """What :func:`stream_archive` unpacked: the extractor's report and the bytes received."""
    report: ExtractReport
    received: int
    total: int | None


async def stream_archive(url: str, staging: Path, *, label: str, topic: str,
                         headers: dict[str, str] | None = None, bus: EventBus | None = None,
                         unpacked_size: int | None = None, session: aiohttp.ClientSession | None = None,
                         probe: Callable[[], str | None] | None = None,
                         space_at: Path | None = None) -> Streamed:
    """Download ``url`` and unpack it into ``staging`` while it arrives (one GET, no
    temporary archive). ``probe`` is asked between chunks (at most 4 times a second); a
    sentence it returns stops the download and is raised as :class:`InstallError` (a venv
    archive whose interpreter this host lacks is refused as soon as its ``pyvenv.cfg`` is
    out). On any failure ``staging`` is left for the caller to remove."""
    from sdpanel.settings import redact

    shown = redact(url)
    own = session is None
    sess = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=60))
    q = ByteQueue()
    done_evt = asyncio.get_running_loop().create_future()
    outcome: dict[str, Any] = {}
    thread: threading.Thread | None = None
    try:
        # identity: a server that gzips on request (nginx, CDNs) would make Content-Length the
        # compressed size while aiohttp hands us more bytes than that (progress past 100 %).
        async with sess.get(url, headers={**(headers or {}), "Accept-Encoding": "identity"}) as resp:
            if resp.status != 200:
                raise InstallError(f"Download of {label} failed: HTTP {resp.status} from {shown}")
            total = resp.content_length
            first = await resp.content.read(64)
            fmt = detect_format(url, first)
            needed = unpacked_size or (int(total * _RATIO[fmt]) if total else 0)
            if needed:
                ensure_free_space(space_at or staging.parent, needed, what=f"unpacking {label}")
            loop = asyncio.get_running_loop()

            def work() -> None:
                try:
                    limits = ExtractLimits(compressed_size=total, declared_size=unpacked_size)
                    outcome["report"] = extract_stream(fmt, q, staging, limits)
                except BaseException as exc:  # noqa: BLE001 - handed back to the loop
                    outcome["error"] = exc
                loop.call_soon_threadsafe(_resolve, done_evt)

            thread = threading.Thread(target=work, name=f"unpack-{label}", daemon=True)
            thread.start()
            done, last, last_done = 0, time.monotonic(), 0
            pending = first
            async for chunk in resp.content.iter_chunked(_CHUNK):
                if pending:
                    chunk, pending = pending + chunk, b""
                ok = q.try_put(chunk)  # no thread hop unless the extractor is behind
                if ok is None:
                    ok = await asyncio.to_thread(q.put, chunk)
                if not ok:
                    break  # the extractor refused the archive: stop downloading
                done = _wire_bytes(resp, total)
                now = time.monotonic()
                if now - last >= 0.25:
                    refused = probe() if probe else None
                    if refused:
                        raise InstallError(refused)
                    _emit(bus, ProgressEvent(topic=topic, key="install", done=done, total=total,
                                             speed=(done - last_done) / (now - last),
                                             message=f"downloading and unpacking {label}"))
                    last, last_done = now, done
            if pending:
                await asyncio.to_thread(q.put, pending)
            done = _wire_bytes(resp, total)
        short = InstallError(f"Download of {label} ended early ({done} of {total} bytes) from {shown}") \
            if total is not None and done < total else None
        q.close(short)
        await done_evt
        if "error" in outcome:  # the extractor's own reason (a refused member) comes first
            raise outcome["error"]
        if short is not None:
            raise short
        refused = probe() if probe else None
        if refused:
            raise InstallError(refused)
        return Streamed(outcome["report"], done, total)
    except BaseException as exc:
        q.close(exc if isinstance(exc, Exception) else None)
        q.abort()
        if thread is not None:
            await asyncio.to_thread(thread.join, 30)
        if isinstance(exc, aiohttp.ClientError):
            host = urlsplit(url).hostname or shown
            raise InstallError(f"Download of {label} failed from {shown}: {network_cause(host, exc)}; "
                               f"{NETWORK_FIX}.") from exc
        raise
    finally:
        if own:
            await sess.close()


async def install_package(url: str, target: str | os.PathLike[str], *, webui: str = "webui",
                          version: str = "", headers: dict[str, str] | None = None,
                          bus: EventBus | None = None, replace: bool = False,
                          unpacked_size: int | None = None,
                          session: aiohttp.ClientSession | None = None,
                          prepare: Prepare | None = None) -> InstallResult:
    """Download ``url`` (.zip / .tar.zst / .tar.lz4 / .tar.gz) and unpack it into ``target``
    while it arrives. ``unpacked_size`` (from a size manifest) sharpens the space check.
    ``prepare(staging)`` runs before the marker (the venv step and the start check)."""
    from sdpanel.settings import redact

    target = Path(target).expanduser().resolve()
    check_target(target, replace)
    staging = staging_dir(target)
    shutil.rmtree(staging, ignore_errors=True)
    topic = f"webui:{webui}"
    shown = redact(url)
    _emit(bus, StateEvent(topic=topic, key=webui, state="installing", data={"source": shown}))
    started = time.monotonic()
    try:
        got = await stream_archive(url, staging, label=webui, topic=topic,
                                   headers=headers, bus=bus, unpacked_size=unpacked_size,
                                   session=session, space_at=target.parent)
        _hoist_single_top(staging)
        result = InstallResult(webui=webui, path=str(target), method="package", source=shown,
                               version=version, files=got.report.files, bytes=got.report.bytes)
        if got.report.skipped_links:
            result.notes.append(f"venv interpreter links recreated for this machine: {got.report.skipped_links}")
        if prepare is not None:
            result.notes += await prepare(staging)
        result.seconds = round(time.monotonic() - started, 3)
        finish_install(staging, target, result, replace=replace, bus=bus)
        _emit(bus, ProgressEvent(topic=topic, key="install", done=got.received, total=got.total,
                                 message="installed"))
        _emit(bus, StateEvent(topic=topic, key=webui, state="installed", data={"path": str(target)}))
        return result
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, Exception):
            _emit(bus, StateEvent(topic=topic, key=webui, state="failed", data={"error": redact(str(exc))}))
        raise
