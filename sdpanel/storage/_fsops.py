"""Moving files into the store without ever losing one.

Same file system: ``rename`` (atomic). Across file systems: free space is checked first,
the file is copied under a temporary ``.part`` name while hashing, the copy is re-read and
compared, renamed to its real name, and only then is the source deleted. Any failure on the
way (ENOSPC, an unreadable source) removes the temporary copy and leaves the source as it was.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ._index import CHUNK, hash_file
from ._root import ensure_free_space


class MoveError(OSError):
    """A file could not be moved; the source is still in place. The message says why."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "move failed"


@dataclass(frozen=True)
class Placed:
    """What happened to one file: moved to ``dest``, or ``deduplicated`` (the store already
    had the same content at ``dest`` and the source was removed)."""

    src: str
    dest: str
    size: int
    action: str  # "moved" | "renamed" | "deduplicated" | "link-moved"


def same_device(src: Path, dest_dir: Path) -> bool:
    """True when a rename from ``src`` into ``dest_dir`` stays on one file system."""
    return os.lstat(src).st_dev == os.stat(dest_dir).st_dev


def _write_chunk(f: object, data: memoryview) -> None:
    # One place for the write so tests can inject ENOSPC part-way through a copy.
    f.write(data)  # type: ignore[attr-defined]


_MULTI_SUFFIX = re.compile(r"(\.civitai\.json|\.hf\.json|\.preview\.[A-Za-z0-9]+)$")


def unique_name(dest: Path) -> Path:
    """``dest`` or, when taken, ``stem-2.ext``, ``stem-3.ext`` … (first free name). A
    sidecar keeps its double suffix (``m-2.civitai.json``) so it still names its model."""
    if not os.path.lexists(dest):
        return dest
    m = _MULTI_SUFFIX.search(dest.name)
    suffix = m.group(1) if m else dest.suffix
    stem = dest.name[: len(dest.name) - len(suffix)] if suffix else dest.name
    n = 2
    while True:
        cand = dest.with_name(f"{stem}-{n}{suffix}")
        if not os.path.lexists(cand):
            return cand
        n += 1


def _copy_verified(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.sdpanel-move.part")
    size = os.stat(src).st_size
    ensure_free_space(dest.parent, size, what=f"moving {src.name} into the store")
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    try:
        with open(src, "rb", buffering=0) as fi, open(tmp, "wb") as fo:
            while n := fi.readinto(buf):
                h.update(view[:n])
                _write_chunk(fo, view[:n])
            fo.flush()
            os.fsync(fo.fileno())
        if hash_file(tmp) != h.hexdigest():
            raise MoveError(f"copy of {src} to {dest} did not verify (disk error?); source kept")
        shutil.copystat(src, tmp)
        os.rename(tmp, dest)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, MoveError):
            raise
        if isinstance(e, OSError):
            raise MoveError(f"could not copy {src} to {dest.parent}: {e.strerror or e}; "
                            "nothing was lost, the source is still in place") from e
        raise
    os.unlink(src)


def move_file(src: Path, dest: Path) -> None:
    """Move one regular file or symlink to ``dest`` (which must not exist)."""
    if os.path.lexists(dest):
        raise MoveError(f"{dest} already exists; refusing to overwrite it")
    if os.path.islink(src):
        # A link is moved as a link: its target (maybe outside the store) is never touched.
        target = os.readlink(src)
        if not os.path.isabs(target):
            target = os.path.normpath(os.path.join(src.parent, target))
        os.symlink(target, dest)
        os.unlink(src)
        return
    if same_device(src, dest.parent):
        os.rename(src, dest)
    else:
        _copy_verified(src, dest)


def place_file(src: Path, dest: Path) -> Placed:
    """Move ``src`` to ``dest`` inside the store. Same content already there: the source is
    removed (one copy kept). Same name, different content: moved under a free name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if os.path.islink(src):
        final = unique_name(dest)
        move_file(src, final)
        return Placed(str(src), str(final), 0, "link-moved")
    size = os.lstat(src).st_size
    if (os.path.isfile(dest) and not os.path.islink(dest) and os.path.getsize(dest) == size
            and _same_content(src, dest)):
        os.unlink(src)
        return Placed(str(src), str(dest), size, "deduplicated")
    final = unique_name(dest)
    move_file(src, final)
    return Placed(str(src), str(final), size, "moved" if final == dest else "renamed")


def _same_content(a: Path, b: Path) -> bool:
    if os.path.samefile(a, b):
        return True
    try:
        return hash_file(a) == hash_file(b)
    except OSError:
        return False  # unreadable: keep both rather than guess
