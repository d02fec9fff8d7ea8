"""Make a venv that was packed on another machine work where it was unpacked.

A venv hard-codes its location: ``pyvenv.cfg`` names the base interpreter (``home``), the
``bin/python`` link points at it, and every console script starts with
``#!/old/place/venv/bin/python``. After a package is unpacked elsewhere those point at
nothing, so we rewrite them for this machine.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

__all__ = ["find_venvs", "fix_relocated_venv", "venv_python"]

_SHEBANG = re.compile(rb"^#!\s*(\S*?)/bin/python[0-9.]*\b")


def find_venvs(root: Path) -> list[Path]:
    """Venvs at the usual places of a WebUI package (``venv``, ``.venv``, one level down)."""
    found = [p.parent for pattern in ("*/pyvenv.cfg", "*/*/pyvenv.cfg") for p in root.glob(pattern)]
    return sorted(set(found))


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _read_cfg(cfg: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in cfg.read_text(encoding="utf-8", errors="replace").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            values[k.strip()] = v.strip()
    return values


def _local_interpreter(version: str) -> Path | None:
    """This machine's interpreter for the venv's Python ``major.minor``."""
    major_minor = ".".join(version.split(".")[:2])
    if not major_minor or major_minor == f"{sys.version_info[0]}.{sys.version_info[1]}":
        return Path(os.path.realpath(sys.executable))
    found = shutil.which(f"python{major_minor}")
    return Path(os.path.realpath(found)) if found else None


def fix_relocated_venv(venv: Path) -> list[str]:
    """Rewrite ``venv`` (already at its final place) for this machine. Returns notes for
    the log; raises ``RuntimeError`` when no matching interpreter exists here."""
    notes: list[str] = []
    venv = venv.resolve()
    cfg_path = venv / "pyvenv.cfg"
    cfg = _read_cfg(cfg_path)
    python = _local_interpreter(cfg.get("version", cfg.get("version_info", "")))
    if python is None:
        raise RuntimeError(f"The packaged venv {venv} needs Python {cfg.get('version')}, which is "
                           "not installed here: install it or use a package built for this Python")
    old_venv = _old_location(venv, cfg)
    lines = []
    for line in cfg_path.read_text(encoding="utf-8").splitlines():
        key = line.split("=", 1)[0].strip()
        if key == "home":
            line = f"home = {python.parent}"
        elif key == "executable":
            line = f"executable = {python}"
        elif key == "command":
            line = f"command = {python} -m venv {venv}"
        lines.append(line)
    cfg_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    notes.append(f"venv {venv.name}: interpreter {python}")
    bindir = venv / "bin"
    bindir.mkdir(exist_ok=True)
    # The interpreter link: recreate unless it is an in-package link that resolves.
    py = bindir / "python"
    if py.is_symlink() and not py.exists() or not py.exists():
        if py.is_symlink():
            py.unlink()
        os.symlink(python, py)
    for alias in (f"python{python.name[6:7]}", python.name):
        a = bindir / alias
        if alias != "python" and not a.exists() and not a.is_symlink():
            os.symlink("python", a)
    if old_venv and old_venv != str(venv):
        fixed = 0
        for script in bindir.iterdir():
            if script.is_symlink() or not script.is_file() or script.stat().st_size > 4 << 20:
                continue
            data = script.read_bytes()
            if data.startswith(b"#!") and old_venv.encode() in data.split(b"\n", 1)[0]:
                script.write_bytes(data.replace(old_venv.encode(), str(venv).encode(), 1))
                fixed += 1
            elif script.name.startswith("activate") and old_venv.encode() in data:
                script.write_bytes(data.replace(old_venv.encode(), str(venv).encode()))
                fixed += 1
        notes.append(f"venv {venv.name}: moved from {old_venv}, {fixed} script(s) rewritten")
    return notes


def _old_location(venv: Path, cfg: dict[str, str]) -> str | None:
    """Where the venv lived when it was packed: from ``command`` or a script's shebang."""
    command = cfg.get("command", "")
    if " -m venv " in command:
        return command.split(" -m venv ", 1)[1].strip().split()[-1].rstrip("/")
    bindir = venv / "bin"
    if bindir.is_dir():
        for script in bindir.iterdir():
            if script.is_file() and not script.is_symlink():
                with open(script, "rb") as f:
                    m = _SHEBANG.match(f.readline())
                if m and m.group(1):
                    return m.group(1).decode()
    return None
