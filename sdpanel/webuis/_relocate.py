"""Make a venv that was packed on another machine work where it was unpacked.

A venv hard-codes its location: ``pyvenv.cfg`` names the base interpreter (``home``), the
``bin/python`` link points at it, and every console script starts with
``#!/old/place/venv/bin/python``. After a package is unpacked elsewhere those point at
nothing, so we rewrite them for this machine.

Every path the fixer writes must lie inside the install folder, resolved strictly (a
``bin`` or ``pyvenv.cfg`` that is a link out of it, however chained, is refused before
anything is written), and files are opened without following a final link.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from pathlib import Path

from ._member_paths import UnsafeArchiveError

__all__ = ["UnsafeVenvError", "find_venvs", "fix_relocated_venv", "inside_install", "rewrite_file",
           "venv_python"]

_SHEBANG = re.compile(rb"^#!\s*(\S*?)/bin/python[0-9.]*\b")


class UnsafeVenvError(UnsafeArchiveError):
    """A packed venv reaches outside the install folder; nothing was changed."""


def inside_install(root: Path, path: Path) -> Path:
    """``path`` fully resolved, or :class:`UnsafeVenvError` unless it lies inside ``root``.
    Strict resolution: a chain too long to resolve (PATH_MAX) counts as outside."""
    real_root = Path(os.path.realpath(root, strict=True))
    try:
        real = Path(os.path.realpath(path, strict=True))
    except OSError:
        real = None
    if real is None or (real != real_root and real_root not in real.parents):
        rel = path.relative_to(root) if path.is_relative_to(root) else path
        raise UnsafeVenvError(f"Refused the package's venv: {str(rel)!r} leads outside the install "
                              "folder (through a link), so nothing was rewritten; use a package "
                              "whose venv lies inside it.")
    return real


def rewrite_file(path: Path, data: bytes) -> None:
    """Replace a file's content without following a link put in its place."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def find_venvs(root: Path) -> list[Path]:
    """Venvs at the usual places of a WebUI package (``venv``, ``.venv``, one level down),
    found through real folders only: a link named ``venv`` is not followed out."""
    found = []
    for pattern in ("*/pyvenv.cfg", "*/*/pyvenv.cfg"):
        for cfg in root.glob(pattern):
            rel = cfg.relative_to(root).parts
            hops = [root.joinpath(*rel[:i]) for i in range(1, len(rel) + 1)]
            if not any(os.path.islink(h) for h in hops) and stat.S_ISREG(os.lstat(cfg).st_mode):
                found.append(cfg.parent)
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


def _scripts(root: Path, bindir: Path) -> list[Path]:
    """The plain files of ``bin`` that may be rewritten: no links, nothing huge."""
    out = []
    for script in bindir.iterdir():
        st = os.lstat(script)
        if stat.S_ISREG(st.st_mode) and st.st_size <= 4 << 20:
            inside_install(root, script)
            out.append(script)
    return out


def fix_relocated_venv(venv: Path, root: Path | None = None) -> list[str]:
    """Rewrite ``venv`` (already at its final place) for this machine. Returns notes for
    the log; raises ``RuntimeError`` when no matching interpreter exists here and
    :class:`UnsafeVenvError` (before writing anything) when ``pyvenv.cfg`` or ``bin``
    resolves outside ``root`` (the install folder; default: the venv itself)."""
    notes: list[str] = []
    root = root if root is not None else venv
    venv = inside_install(root, venv)
    cfg_path = inside_install(root, venv / "pyvenv.cfg")
    if (venv / "bin").exists() or (venv / "bin").is_symlink():
        inside_install(root, venv / "bin")
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
    bindir = venv / "bin"
    bindir.mkdir(exist_ok=True)
    scripts = _scripts(root, bindir)
    rewrite_file(cfg_path, ("\n".join(lines) + "\n").encode("utf-8"))
    notes.append(f"venv {venv.name}: interpreter {python}")
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
        old, new = old_venv.encode(), str(venv).encode()
        for script in scripts:
            data = script.read_bytes()
            # Only a shebang naming the old venv's own python: "#!/usr/bin/env python" stays
            # as it is even when pyvenv.cfg claims the venv lived at /usr.
            if data.startswith(b"#!" + old + b"/bin/python"):
                rewrite_file(script, data.replace(old, new, 1))
                fixed += 1
            elif script.name.startswith("activate") and old in data:
                rewrite_file(script, data.replace(old, new))
                fixed += 1
        notes.append(f"venv {venv.name}: moved from {old_venv}, {fixed} script(s) rewritten")
    return notes


def _old_location(venv: Path, cfg: dict[str, str]) -> str | None:
    """Where the venv lived when it was packed: from ``command`` or a script's shebang."""
    command = cfg.get("command", "")
    if " -m venv " in command:
        return _plausible(command.split(" -m venv ", 1)[1].strip().split()[-1].rstrip("/"))
    bindir = venv / "bin"
    if bindir.is_dir():
        for script in bindir.iterdir():
            if script.is_file() and not script.is_symlink():
                with open(script, "rb") as f:
                    m = _SHEBANG.match(f.readline())
                if m and m.group(1):
                    return _plausible(m.group(1).decode())
    return None


def _plausible(old: str) -> str | None:
    """A place a venv was built at: absolute and at least two levels deep ("/" or "/usr"
    would match paths in every script that have nothing to do with the venv)."""
    return old if os.path.isabs(old) and len(Path(old).parts) > 2 else None
