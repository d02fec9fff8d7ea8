"""The cleaner: a preview of what goes and how many bytes return, then ``apply_clean``.

- Model criteria (kind, size, age, unused) combine with AND; a model's sidecars
  (``.civitai.json``, ``.hf.json``, ``.preview.*``) go with it.
- "Unused" means no linked WebUI sees the model's kind (per the link manifests).
- Leftovers: ``.part``/``.aria2`` files untouched for ``leftover_min_age_s`` (so a download in
  progress is never taken) and broken symlinks, inside the store.
- Caches: whole cache folders by name (``pip``, ``huggingface``).
- Deleting through a link removes the link: a path is taken apart into its resolved parent
  and its own name, the parent must lie in the store, and a final symlink is unlinked, never
  followed. Nothing outside the store is deleted, except the caches named explicitly.
- "Bytes that return" count a file only when every name of it goes (hardlinks).
- ``apply_clean`` re-checks each entry: one that changed since the preview is skipped.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ._index import walk_files
from ._manifest import linked_kinds
from ._root import STATE_DIR, StorageRoot, human_bytes
from ._root import kinds as all_kinds
from ._usage import cache_dirs, dir_bytes, is_partial, is_sidecar


@dataclass(frozen=True)
class CleanItem:
    path: str
    reason: str
    size: int
    dev: int
    ino: int
    mtime_ns: int
    nlink: int
    is_link: bool = False
    is_dir: bool = False
    kind: str | None = None


@dataclass
class CleanPlan:
    store: str
    items: list[CleanItem] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cache_roots: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        """Bytes that return if the whole plan is applied."""
        return _freed(self.items)

    def summary(self) -> str:
        lines = [f"{len(self.items)} item(s); {human_bytes(self.bytes)} would be freed"]
        for it in self.items:
            what = "link" if it.is_link else ("folder" if it.is_dir else human_bytes(it.size))
            lines.append(f"  {what:>10}  {it.path}  ({it.reason})")
        lines += [f"  error: {e}" for e in self.errors]
        return "\n".join(lines)


@dataclass
class CleanResult:
    deleted: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bytes_freed: int = 0

    def summary(self) -> str:
        lines = [f"deleted {len(self.deleted)} item(s), freed {human_bytes(self.bytes_freed)}"]
        lines += [f"  skipped {p}: {why}" for p, why in self.skipped]
        lines += [f"  error: {e}" for e in self.errors]
        return "\n".join(lines)


def _freed(items: Iterable[CleanItem]) -> int:
    items = list(items)
    names = Counter((i.dev, i.ino) for i in items if not i.is_dir and not i.is_link)
    total = sum(i.size for i in items if i.is_dir)
    counted: set[tuple[int, int]] = set()
    for i in items:
        key = (i.dev, i.ino)
        if i.is_dir or i.is_link or key in counted:
            continue
        if names[key] >= i.nlink:  # every name of the file goes
            total += i.size
            counted.add(key)
    return total


def _item(path: str, reason: str, kind: str | None = None) -> CleanItem:
    st = os.lstat(path)
    link = os.path.islink(path)
    return CleanItem(path, reason, 0 if link else st.st_size, st.st_dev, st.st_ino,
                     st.st_mtime_ns, st.st_nlink, link, False, kind)


def _kind_of(root: StorageRoot, path: str) -> str | None:
    for k in all_kinds():
        folder = str(root.path / str(k["folder"]))
        if path.startswith(folder + os.sep):
            return str(k["id"])
    return None


def _sidecars(model: Path) -> list[Path]:
    stem = model.with_suffix("").name
    return sorted(p for p in model.parent.glob(f"{stem}.*")
                  if p != model and is_sidecar(p.name) and not p.is_dir())


def _in_store(root: StorageRoot, path: str) -> str | None:
    """``path`` with its parent resolved, if that parent lies in the store (else None)."""
    p = Path(os.path.abspath(path))
    parent = Path(os.path.realpath(p.parent))
    if not root.contains(parent) or parent == root.state_dir or root.state_dir in parent.parents:
        return None
    return str(parent / p.name)


def plan_clean(storage_root: StorageRoot | str | os.PathLike[str], *,
               kinds: Iterable[str] | None = None, files: Iterable[str | os.PathLike[str]] = (),
               larger_than: int | None = None, older_than_days: float | None = None,
               unused: bool = False, leftovers: bool = False, caches: Iterable[str] = (),
               leftover_min_age_s: float = 600, now: float | None = None) -> CleanPlan:
    root = storage_root if isinstance(storage_root, StorageRoot) else StorageRoot.at(storage_root)
    now = time.time() if now is None else now
    plan = CleanPlan(str(root.path))
    picked: dict[str, CleanItem] = {}

    def add(path: str, reason: str) -> None:
        if path not in picked:
            picked[path] = _item(path, reason, _kind_of(root, path))

    wanted = set(kinds or ())
    if wanted or larger_than is not None or older_than_days is not None or unused:
        seen_by = linked_kinds(root)
        folders = [(str(k["id"]), root.path / str(k["folder"])) for k in all_kinds()
                   if not wanted or k["id"] in wanted]
        for kid, folder in folders:
            for e in walk_files([folder], plan.errors):
                if is_sidecar(e.path.name) or is_partial(e.path.name):
                    continue
                if larger_than is not None and e.size <= larger_than:
                    continue
                if older_than_days is not None and e.mtime_ns / 1e9 > now - older_than_days * 86400:
                    continue
                if unused and seen_by.get(kid):
                    continue
                why = ", ".join(r for r, on in [
                    (f"kind {kid}", bool(wanted)),
                    (f"larger than {human_bytes(larger_than or 0)}", larger_than is not None),
                    (f"older than {older_than_days:g} days" if older_than_days else "", older_than_days is not None),
                    ("no linked WebUI sees its kind", unused)] if on)
                add(str(e.path), why)
                for s in _sidecars(e.path):
                    add(str(s), f"sidecar of {e.path.name}")
    for f in files:
        p = _in_store(root, os.fspath(f))
        if p is None:
            plan.errors.append(f"{f} is outside the store {root.path}; refused")
        elif not os.path.lexists(p):
            plan.errors.append(f"{f} does not exist")
        elif os.path.isdir(p) and not os.path.islink(p):
            plan.errors.append(f"{f} is a folder; name the files to delete")
        else:
            add(p, "chosen")
            if not os.path.islink(p):
                for s in _sidecars(Path(p)):
                    add(str(s), f"sidecar of {Path(p).name}")
    if leftovers:
        _leftovers(root, now - leftover_min_age_s, add)
    known = cache_dirs()
    for name in caches:
        if name not in known:
            plan.errors.append(f"unknown cache {name!r}; known: {', '.join(known)}")
            continue
        d = known[name]
        if d.is_dir() and not d.is_symlink():
            st = os.lstat(d)
            picked[str(d)] = CleanItem(str(d), f"{name} cache", dir_bytes(d), st.st_dev,
                                       st.st_ino, st.st_mtime_ns, st.st_nlink, False, True)
            plan.cache_roots.append(str(d))
    plan.items = list(picked.values())
    return plan


def _leftovers(root: StorageRoot, before: float, add: Callable[[str, str], None]) -> None:
    for dirpath, dirs, files in os.walk(root.path):  # os.walk does not follow links
        if dirpath == str(root.path) and STATE_DIR in dirs:
            dirs.remove(STATE_DIR)
        for name in files + dirs:
            p = os.path.join(dirpath, name)
            if os.path.islink(p) and not os.path.exists(p):
                add(p, "broken symlink")
            elif (name in files and is_partial(name) and not os.path.islink(p)
                  and os.lstat(p).st_mtime < before):
                add(p, "download leftover")


def _rmtree(path: str) -> list[str]:
    """Delete a folder (links inside are removed, not followed); what failed, if anything."""
    failed: list[str] = []

    def note(_fn: object, p: str, exc: object) -> None:
        err = exc[1] if isinstance(exc, tuple) else exc
        failed.append(f"{p}: {err}")

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=note)
    else:
        shutil.rmtree(path, onerror=note)
    return failed


def apply_clean(plan: CleanPlan) -> CleanResult:
    """Delete what the plan lists, re-checking each entry first."""
    root = StorageRoot.at(plan.store)
    res = CleanResult()
    done: list[CleanItem] = []
    gone: Counter[tuple[int, int]] = Counter()  # names of one file deleted so far
    for it in plan.items:
        if it.is_dir:
            if it.path not in plan.cache_roots or os.path.islink(it.path) or not os.path.isdir(it.path):
                res.skipped.append((it.path, "no longer a cache folder"))
                continue
            size = dir_bytes(it.path)
            res.errors += [f"could not delete {f}" for f in _rmtree(it.path)[:5]]
            res.deleted.append(it.path)
            res.bytes_freed += size - (dir_bytes(it.path) if os.path.isdir(it.path) else 0)
            continue
        if _in_store(root, it.path) != it.path:
            res.skipped.append((it.path, "no longer inside the store"))
            continue
        try:
            st = os.lstat(it.path)
        except FileNotFoundError:
            res.skipped.append((it.path, "already gone"))
            continue
        expect = (it.dev, it.ino, it.mtime_ns, it.nlink - gone[(it.dev, it.ino)])
        if ((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_nlink) != expect
                or os.path.islink(it.path) != it.is_link
                or (not it.is_link and st.st_size != it.size)):
            res.skipped.append((it.path, "changed since the preview"))
            continue
        try:
            os.unlink(it.path)  # on a link: the link goes, its target stays
        except OSError as e:
            res.errors.append(f"could not delete {it.path}: {e.strerror or e}")
            continue
        res.deleted.append(it.path)
        done.append(it)
        gone[(it.dev, it.ino)] += 1
    res.bytes_freed += _freed(done)
    return res
