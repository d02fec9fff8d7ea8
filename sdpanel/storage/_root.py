"""The central store: one folder per model kind plus a ``.sdpanel/`` state folder.

Layout::

    <root>/
      checkpoints/ loras/ vae/ ...        one folder per kind (configs/kinds.json)
      outputs/                            generated images
      .sdpanel/                           settings.json, journals, pids, logs, caches
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sdpanel._configs import load_config

STATE_DIR = ".sdpanel"


class InsufficientSpaceError(OSError):
    """Raised before a large write that would not fit. The message names the shortfall."""

    def __init__(self, path: Path, needed: int, free: int, what: str = "", reserve: int = 0) -> None:
        """``needed`` includes ``reserve``, the space kept free for the system, which the
        message names apart so a small file does not read as a big one."""
        self.path, self.needed, self.free = path, needed, free
        label = f" for {what}" if what else ""
        super().__init__(path)
        wanted = human_bytes(needed - reserve) + (f" plus {human_bytes(reserve)} kept free" if reserve else "")
        self.message = (
            f"Not enough disk space{label} on {path}: needs {wanted}, "
            f"{human_bytes(free)} free (short by {human_bytes(needed - free)}). "
            "Free space with `sdpanel clean` or point SDPANEL_STORAGE at a bigger disk."
        )

    def __str__(self) -> str:
        return self.message


def human_bytes(n: float) -> str:
    step = 1024.0
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < step or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= step
    return f"{n:.1f} TiB"


def kinds() -> list[dict[str, object]]:
    """Model kinds from configs/kinds.json, in display order."""
    return list(load_config("kinds.json")["kinds"])


def kind_ids() -> list[str]:
    return [str(k["id"]) for k in kinds()]


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


_RESERVE_MAX = 256 * 1024**2
_RESERVE_FRACTION = 20  # 5 % of the disk


def reserve_bytes(path: str | os.PathLike[str]) -> int:
    """The space kept free for the system on ``path``'s file system: 5 % of the disk, at
    most 256 MiB — a fixed 256 MiB would refuse a 1 MiB file on a small disk."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return min(_RESERVE_MAX, shutil.disk_usage(p).total // _RESERVE_FRACTION)


def ensure_free_space(path: str | os.PathLike[str], needed: int, what: str = "",
                      reserve: int | None = None) -> None:
    """Raise :class:`InsufficientSpaceError` unless ``needed`` bytes (plus a reserve so the
    system keeps breathing, :func:`reserve_bytes` unless given) fit on ``path``'s disk."""
    if reserve is None:
        reserve = reserve_bytes(path)
    free = free_bytes(path)
    if needed + reserve > free:
        raise InsufficientSpaceError(Path(path), needed + reserve, free, what, reserve)


@dataclass(frozen=True)
class StorageRoot:
    path: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> StorageRoot:
        return cls(Path(path).expanduser().resolve())

    @property
    def state_dir(self) -> Path:
        return self.path / STATE_DIR

    @property
    def outputs_dir(self) -> Path:
        return self.path / "outputs"

    def kind_dir(self, kind: str) -> Path:
        for k in kinds():
            if k["id"] == kind:
                return self.path / str(k["folder"])
        raise ValueError(f"Unknown model kind {kind!r}; known kinds: {', '.join(kind_ids())}")

    def state_path(self, *parts: str) -> Path:
        """A path under ``.sdpanel/`` (settings, journals, pids, logs), parent created."""
        p = self.state_dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def ensure(self) -> StorageRoot:
        """Create the skeleton (idempotent)."""
        for k in kinds():
            (self.path / str(k["folder"])).mkdir(parents=True, exist_ok=True)
        self.outputs_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("logs", "pids", "journals", "cache"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        return self

    def contains(self, candidate: str | os.PathLike[str]) -> bool:
        """True when ``candidate`` (after resolving symlinks) lies inside the store."""
        try:
            Path(candidate).resolve().relative_to(self.path)
        except ValueError:
            return False
        return True
