"""Prebuilt venv archives (``.tar.lz4`` holding one top ``venv/``), as sdAIgen uses them.

One archive serves every WebUI that names it, so it is unpacked once, under
``<webuis dir>/.venvs/<archive name>/venv``, and each WebUI's ``venv`` is a link to it (the
Storage tab counts it once: its files are the same inodes). It is streamed (download and
unpack overlapped, the package path's ``stream_archive``), refused as soon as its
``pyvenv.cfg`` names a Python this host lacks (the file name may lie; the venv cannot), and
relocated for where it lands. A complete copy carries a marker and is never fetched again;
anything unfinished is removed, so a half-unpacked venv never looks usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sdpanel.runtime import EventBus, LogEvent

from ._extract import ArchiveError
from ._install import InstallError, fix_relocated_venv_at, stream_archive
from ._relocate import _local_interpreter, _read_cfg

__all__ = ["VENV_MARKER", "VenvUnusable", "ensure_venv_archive", "hf_base", "intact_venv", "link_venv",
           "prebuilt_url", "shared_venv_home"]

VENV_MARKER = ".sdpanel-venv.json"
_LOCKS: dict[str, asyncio.Lock] = {}


class VenvUnusable(InstallError):
    """A venv archive this host cannot use (its Python is missing here): build one instead."""


def hf_base(storage_path: Path | None = None) -> str:
    """The Hugging Face base URL, as model links use it: ``HF_ENDPOINT`` wins over the
    ``hf_base_url`` setting (mirrors, test servers)."""
    env = os.environ.get("HF_ENDPOINT")
    if env:
        return env.rstrip("/")
    try:
        from sdpanel.settings import load_settings

        return load_settings(storage_path).hf_base_url.rstrip("/")
    except ValueError:  # a bad setting elsewhere is reported where it is used
        return "https://huggingface.co"


def prebuilt_url(base: str, repo: str, file: str) -> str:
    return f"{base.rstrip('/')}/{repo}/resolve/main/{file}"


def shared_venv_home(webuis_dir: Path, archive: str) -> Path:
    """Where the venv of ``archive`` lives (``<home>/venv``), shared by the WebUIs naming it."""
    stem = archive
    for suffix in (".tar.lz4", ".tar.zst", ".tar.gz", ".tar"):
        stem = stem.removesuffix(suffix)
    return webuis_dir / ".venvs" / stem


def intact_venv(home: Path) -> dict[str, Any] | None:
    """The marker of a complete, usable unpacked venv at ``home``; None otherwise."""
    venv = home / "venv"
    try:
        info = dict(json.loads((home / VENV_MARKER).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
    if not (venv / "pyvenv.cfg").is_file() or not (venv / "bin" / "python").exists():
        return None  # the interpreter it was fixed for is gone (a new machine, a removed Python)
    return info


def _interpreter_problem(cfg: Path, archive: str) -> str | None:
    """One sentence when the venv's ``pyvenv.cfg`` names a Python this host lacks."""
    if not cfg.is_file():
        return None
    values = _read_cfg(cfg)
    version = values.get("version") or values.get("version_info") or ""
    if not version:
        return None  # still being written: asked again at the end
    if _local_interpreter(version) is None:
        return (f"The venv archive {archive} needs Python {version} (its pyvenv.cfg says so), which "
                f"this machine lacks (python{'.'.join(version.split('.')[:2])} is not on PATH): "
                "building a venv for this machine's Python instead")
    return None


def _refuse_foreign(cfg: Path, archive: str) -> None:
    """Stops the download (``stream_archive``'s probe) once the venv turns out unusable."""
    problem = _interpreter_problem(cfg, archive)
    if problem:
        raise VenvUnusable(problem)


@contextlib.asynccontextmanager
async def _lock(home: Path) -> AsyncIterator[None]:
    """One unpacker per archive: an asyncio lock inside this process, ``flock`` on
    ``<home>.lock`` across processes (a CLI install beside a kernel's)."""
    home.parent.mkdir(parents=True, exist_ok=True)
    async with _LOCKS.setdefault(str(home), asyncio.Lock()):
        with open(home.with_name(home.name + ".lock"), "a") as fh:
            await asyncio.to_thread(fcntl.flock, fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


async def ensure_venv_archive(url: str, home: Path, *, archive: str, topic: str,
                              bus: EventBus | None = None) -> tuple[Path, bool]:
    """The unpacked, relocated venv of ``archive`` at ``home/venv``: kept when intact, else
    streamed from ``url``. Returns (venv, fetched). Raises :class:`VenvUnusable` when its
    Python is missing here, ``InstallError`` / ``ArchiveError`` when the download or the
    archive is bad (nothing is left behind then)."""
    from sdpanel.settings import redact

    def log(message: str) -> None:
        if bus is not None:
            bus.publish(LogEvent(topic=topic, key="install", message=message))

    async with _lock(home):
        if intact_venv(home) is not None:
            log(f"venv {archive}: already unpacked at {home / 'venv'} (shared), not fetched again")
            return home / "venv", False
        staging = home.with_name(home.name + ".installing")
        shutil.rmtree(staging, ignore_errors=True)
        cfg = staging / "venv" / "pyvenv.cfg"
        started = time.monotonic()
        try:
            got = await stream_archive(url, staging, label=f"the venv {archive}", topic=topic, bus=bus,
                                       probe=lambda: _refuse_foreign(cfg, archive))
            tops = sorted(p.name for p in staging.iterdir())
            if tops != ["venv"] or not cfg.is_file():
                raise ArchiveError(f"The venv archive {archive} must hold one top folder venv/ with a "
                                   f"pyvenv.cfg (it holds {', '.join(tops[:5]) or 'nothing'}): "
                                   "use an archive made with `tar c venv | lz4`")
            notes = fix_relocated_venv_at(staging / "venv", staging, home)
            (staging / VENV_MARKER).write_text(json.dumps({
                "archive": archive, "source": redact(url), "bytes": got.report.bytes,
                "files": got.report.files, "python": _read_cfg(cfg).get("version", ""),
                "seconds": round(time.monotonic() - started, 3), "installed": time.time()}, indent=1),
                encoding="utf-8")
            if home.exists():
                shutil.rmtree(home)  # an incomplete or stale copy: replaced as a whole
            staging.rename(home)
        except (InstallError, ArchiveError):
            shutil.rmtree(staging, ignore_errors=True)
            raise
        except RuntimeError as exc:  # fix_relocated_venv: no interpreter for this venv here
            shutil.rmtree(staging, ignore_errors=True)
            raise VenvUnusable(str(exc)) from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        for note in notes:
            log(note)
        log(f"venv {archive}: unpacked and relocated at {home / 'venv'} ({got.received} bytes fetched)")
        return home / "venv", True


def link_venv(webui_dir: Path, venv: Path) -> bool:
    """Point ``webui_dir/venv`` at the shared ``venv``. False (and nothing changed) when the
    package brought a venv of its own."""
    link = webui_dir / "venv"
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        return False
    os.symlink(venv, link, target_is_directory=True)
    return True
