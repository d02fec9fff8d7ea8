"""Which notebook host we run on, and where things go there.

The table is data (``configs/platforms.json``, one row per line of the platforms
reference); this module only evaluates markers. ``env`` and ``fs_root`` are parameters so
tests can fake any host in a temporary folder.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdpanel._configs import load_config

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


class PlatformError(ValueError):
    """A bad override (unknown SDPANEL_PLATFORM)."""


@dataclass(frozen=True)
class PlatformInfo:
    name: str
    label: str
    storage_root: Path
    work_dir: Path
    persistent_dir: Path | None
    lab_extensions: bool
    reach: str  # "tunnel" (public tunnel needed) or "proxy" (through the Jupyter server)
    secrets: str  # "colab", "kaggle" or "env"
    reason: str = ""  # which marker matched, or the override used

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "storage_root": str(self.storage_root),
            "work_dir": str(self.work_dir),
            "persistent_dir": str(self.persistent_dir) if self.persistent_dir else None,
            "lab_extensions": self.lab_extensions,
            "reach": self.reach,
            "secrets": self.secrets,
            "reason": self.reason,
        }


def platform_rows() -> list[dict[str, Any]]:
    return list(load_config("platforms.json")["platforms"])


def platform_names() -> list[str]:
    return [str(row["name"]) for row in platform_rows()]


def checkout_dir() -> Path | None:
    """The source checkout sdpanel runs from (pyproject.toml next to the package), if any."""
    root = _PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() else None


def _module_available(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # parent package missing, or a faked module
        return False


def _matches(row: Mapping[str, Any], env: Mapping[str, str], fs: Path) -> str:
    """The marker that identifies ``row`` here, or "" when none does."""
    markers: Mapping[str, Any] = row.get("markers", {})
    for var in markers.get("env_any", []):
        if env.get(var):
            return f"environment variable {var}"
    for var, value in markers.get("env_equals", {}).items():
        if env.get(var) == value:
            return f"{var}={value}"
    for module in markers.get("modules_any", []):
        if _module_available(module):
            return f"module {module}"
    paths = markers.get("paths_all", [])
    if paths and all(_on(fs, p).exists() for p in paths):
        return "path " + ", ".join(paths)
    return ""


def _on(fs: Path, path: str) -> Path:
    """``path`` (absolute, as in the table) inside the file system rooted at ``fs``."""
    return fs / path.lstrip("/") if path.startswith("/") else Path(path)


def _expand(path: str, fs: Path, env: Mapping[str, str], storage: Path | None) -> Path | None:
    if path.startswith("<checkout>"):
        checkout = checkout_dir()
        return checkout / path.removeprefix("<checkout>/") if checkout else None
    if path == "<storage>":
        return storage
    if path.startswith("~"):
        home = Path(env["HOME"]) if env.get("HOME") else Path.home()
        return home / path.removeprefix("~/")
    return _on(fs, path)


def _pick(candidates: list[Mapping[str, str]], fs: Path, env: Mapping[str, str],
          storage: Path | None = None) -> Path | None:
    for cand in candidates:
        when = cand.get("when")
        if when and not _on(fs, when).exists():
            continue
        chosen = _expand(cand["path"], fs, env, storage)
        if chosen is not None:
            return chosen
    return None


def detect_platform(env: Mapping[str, str] | None = None,
                    fs_root: str | os.PathLike[str] | None = None) -> PlatformInfo:
    """Detect the host from the platform table's markers. ``SDPANEL_PLATFORM`` forces a
    row by name; ``SDPANEL_STORAGE`` sets the storage root. ``fs_root`` None: the
    environment's ``SDPANEL_FS_ROOT`` (tests fake a host's folders in a temporary root that
    a notebook kernel must see too), else "/"."""
    environ = os.environ if env is None else env
    fs = Path(fs_root if fs_root is not None else (environ.get("SDPANEL_FS_ROOT") or "/"))
    rows = platform_rows()
    forced = (environ.get("SDPANEL_PLATFORM") or "").strip().lower()
    if forced and forced != "auto":
        by_name = {str(r["name"]): r for r in rows}
        if forced not in by_name:
            raise PlatformError(
                f"SDPANEL_PLATFORM={forced!r} is not a known platform; use one of "
                f"{', '.join(by_name)} (or unset it to detect the host).")
        row, reason = by_name[forced], "SDPANEL_PLATFORM"
    else:
        row, reason = rows[-1], "no platform markers found"
        for candidate in rows:
            hit = _matches(candidate, environ, fs)
            if hit:
                row, reason = candidate, hit
                break
    storage = _pick(row["storage"], fs, environ)
    if storage is None:  # only when a table row has no usable candidate: a config bug
        raise PlatformError(f"platforms.json row {row['name']!r} has no usable storage path")
    override = (environ.get("SDPANEL_STORAGE") or "").strip()
    if override:
        home = environ.get("HOME")
        storage = Path(override.replace("~", home, 1) if home and override.startswith("~")
                       else os.path.expanduser(override))
        storage = storage if storage.is_absolute() else Path.cwd() / storage
        reason += "; storage from SDPANEL_STORAGE"
    work = _expand(str(row["work"]), fs, environ, storage) or storage
    persistent = _pick(row.get("persistent", []), fs, environ, storage)
    return PlatformInfo(
        name=str(row["name"]),
        label=str(row["label"]),
        storage_root=storage,
        work_dir=work,
        persistent_dir=persistent,
        lab_extensions=bool(row["lab_extensions"]),
        reach=str(row["reach"]),
        secrets=str(row["secrets"]),
        reason=reason,
    )
