"""Collapse duplicate files in the store to one copy.

Candidates are files of equal size (a unique size cannot have a twin), confirmed by sha256
from the content index. Each extra copy is replaced, atomically, by a hardlink to the kept
file (same file system) or else a relative symlink. Bytes saved count an inode only when
every name it had was replaced (a copy still hard-linked elsewhere frees nothing).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ._index import ContentIndex, Entry
from ._root import StorageRoot, human_bytes, kinds


@dataclass
class DedupGroup:
    sha256: str
    size: int
    keep: str
    replaced: list[str] = field(default_factory=list)
    how: str = "hardlink"  # or "symlink"


@dataclass
class DedupReport:
    dry_run: bool
    groups: list[DedupGroup] = field(default_factory=list)
    bytes_saved: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def files_replaced(self) -> int:
        return sum(len(g.replaced) for g in self.groups)

    def summary(self) -> str:
        verb = "would save" if self.dry_run else "saved"
        lines = [f"{len(self.groups)} duplicate group(s), {self.files_replaced} extra cop(ies); "
                 f"{verb} {human_bytes(self.bytes_saved)}"]
        for g in self.groups:
            lines.append(f"  keep {g.keep} ({human_bytes(g.size)})")
            lines += [f"    {'=' if self.dry_run else '->'} {p} ({g.how})" for p in g.replaced]
        lines += [f"  error: {e}" for e in self.errors]
        return "\n".join(lines)


def _store_roots(root: StorageRoot) -> list[Path]:
    return [root.path / str(k["folder"]) for k in kinds() if (root.path / str(k["folder"])).is_dir()]


def _replace(path: Path, keep: Path, same_dev: bool) -> str:
    tmp = path.with_name(f".{path.name}.sdpanel-dedup")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    how = "hardlink"
    try:
        if not same_dev:
            raise OSError("different file systems")
        os.link(keep, tmp)
    except OSError:
        # Other file system, or one without hardlinks: a relative symlink keeps the
        # store movable. If that fails too (no links at all), the error goes up.
        os.symlink(os.path.relpath(keep, path.parent), tmp)
        how = "symlink"
    os.replace(tmp, path)  # atomic: the name always points at the content
    return how


def dedup(storage_root: StorageRoot | str | os.PathLike[str], dry_run: bool = False,
          min_size: int = 1, index: ContentIndex | None = None,
          progress: Callable[[int, int], None] | None = None) -> DedupReport:
    """``progress(bytes_hashed, bytes_to_hash)`` is called from hashing threads."""
    root = storage_root if isinstance(storage_root, StorageRoot) else StorageRoot.at(storage_root)
    idx = index or ContentIndex(root)
    found = idx.scan(_store_roots(root), hash="collisions", progress=progress)
    entries = [e for e in found if e.size >= min_size]
    rep = DedupReport(dry_run, errors=list(idx.errors))
    by_sha: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        if e.sha256:
            by_sha[e.sha256].append(e)
    for sha, group in sorted(by_sha.items(), key=lambda kv: str(kv[1][0].path)):
        inodes: dict[tuple[int, int], list[Entry]] = defaultdict(list)
        for e in group:
            inodes[(e.dev, e.ino)].append(e)
        if len(inodes) < 2:
            continue  # already one file (hardlinks)
        # Keep the inode with most names (fewest changes), then the oldest, then by path.
        keep_key = min(inodes, key=lambda k: (-len(inodes[k]), inodes[k][0].mtime_ns,
                                             str(inodes[k][0].path)))
        keep = inodes[keep_key][0]
        g = DedupGroup(sha, keep.size, str(keep.path))
        for key, names in sorted(inodes.items(), key=lambda kv: str(kv[1][0].path)):
            if key == keep_key:
                continue
            done = 0
            for e in sorted(names, key=lambda e: str(e.path)):
                if not dry_run:
                    if not (ContentIndex._unchanged(str(e.path), e.key)
                            and ContentIndex._unchanged(str(keep.path), keep.key)):
                        rep.errors.append(f"{e.path} changed during dedup; left as is")
                        continue
                    try:
                        g.how = _replace(e.path, keep.path, e.dev == keep.dev)
                    except OSError as err:
                        rep.errors.append(f"could not replace {e.path}: {err.strerror or err}")
                        continue
                elif e.dev != keep.dev:
                    g.how = "symlink"
                g.replaced.append(str(e.path))
                done += 1
            if done == names[0].nlink:  # every name gone: the space returns
                rep.bytes_saved += names[0].size
        if g.replaced:
            rep.groups.append(g)
    return rep
