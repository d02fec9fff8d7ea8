"""Make a WebUI see the store, and undo it.

- ComfyUI: our key in ``extra_model_paths.yaml`` (the user's keys untouched).
- The others: one directory symlink per folder (WebUI folder -> store kind folder). A folder
  nested in another linked folder (A1111 ``models/Stable-diffusion/unet``) or shared by two
  kinds (``models/ControlNet`` for ipadapter) is realised as a relative symlink inside the
  store (``checkpoints/unet -> ../diffusion_models``), because the outer folder already is
  the store's folder. Side effect: ComfyUI lists those sub-folders too.
- Real files already in a WebUI folder are moved into the store first (same content: one
  copy; same name, other content: both kept, the newcomer renamed), every move recorded in
  the manifest. Placeholder files the WebUIs ship ("Put ... here.txt") are set aside under
  ``.sdpanel/links/placeholders/`` and put back by unlink.
- No symlinks on this file system: ComfyUI needs none; the others get one hardlink per
  model file (recorded), refreshed by running link again.
- ``unlink`` replaces our symlinks with empty real folders (and removes our hardlinks and
  yaml key): the WebUI is back to a plain layout, the models stay in the store, where every
  other WebUI still sees them. Moving them back would duplicate data and break the others.
- Links are never followed while moving: a link found in a WebUI folder is moved as a link,
  its target (maybe outside the store) is never read, moved or deleted.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _comfy_yaml as cy
from ._fsops import MoveError, Placed, move_file, place_file, unique_name
from ._manifest import all_manifests, load_manifest, manifest_path, save_manifest
from ._root import STATE_DIR, StorageRoot
from ._webuis import normalize_webui, webui_folders, webui_label, webui_link_method

PLACEHOLDER = re.compile(r"^(put|place)[ _].*[ _]here(\.txt)?$", re.IGNORECASE)


@dataclass
class LinkReport:
    webui: str
    webui_dir: str
    method: str  # "extra_model_paths" | "symlink" | "hardlink"
    linked: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    placed: list[Placed] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    manifest: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        moved = [p for p in self.placed if p.action != "deduplicated"]
        dup = [p for p in self.placed if p.action == "deduplicated"]
        lines = [f"{webui_label(self.webui)} at {self.webui_dir}: {self.method}"]
        if self.linked:
            lines.append(f"  linked {len(self.linked)}: {', '.join(self.linked)}")
        if self.already:
            lines.append(f"  already linked {len(self.already)}")
        if self.removed:
            lines.append(f"  unlinked {len(self.removed)}: {', '.join(self.removed)}")
        if moved or dup:
            lines.append(f"  moved {len(moved)} file(s) into the store, {len(dup)} duplicate(s) "
                         "collapsed to the store's copy")
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  error: {e}" for e in self.errors]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Slot:
    kind: str
    rel: str  # the WebUI's folder, relative to its root
    target: Path  # the store's kind folder
    location: Path  # where the link lives: the WebUI folder, or inside the store when nested
    nested: bool


def _slots(root: StorageRoot, wd: Path, webui: str, in_store: bool) -> list[_Slot]:
    folders = webui_folders(webui)
    owner: dict[str, str] = {}
    for kind, rels in folders.items():
        for rel in rels:
            owner.setdefault(rel, kind)
    out = []
    for kind, rels in folders.items():
        for rel in rels:
            target = root.kind_dir(kind)
            if owner[rel] != kind:  # shared folder: a sub-folder named after the kind
                base = root.kind_dir(owner[rel]) if in_store else wd / rel
                out.append(_Slot(kind, rel, target, base / target.name, in_store))
                continue
            anc = [a for a in owner if rel.startswith(a + "/")]
            if anc and in_store:
                a = max(anc, key=len)
                out.append(_Slot(kind, rel, target, root.kind_dir(owner[a]) / rel[len(a) + 1:], True))
            else:
                out.append(_Slot(kind, rel, target, wd / rel, False))
    return out


def _inside(path: Path, base: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(base))
    except ValueError:
        return False
    return True


def _symlinks_work(wd: Path) -> bool:
    probe = wd / f".sdpanel-symlink-probe-{os.getpid()}"
    try:
        os.symlink("sdpanel-probe-target", probe)
    except OSError:
        return False
    probe.unlink()
    return True


def _adopt(src: Path, dest: Path, exclude: set[Path], rep: LinkReport,
           aside: Path | None, keep_hardlinks: bool = False) -> None:
    """Move everything under the real folder ``src`` into ``dest`` (same relative paths)."""
    try:
        entries = sorted(os.scandir(src), key=lambda e: e.name)
    except OSError as e:
        rep.errors.append(f"cannot list {src}: {e.strerror or e}")
        return
    for de in entries:
        p = Path(de.path)
        if p in exclude:
            continue
        try:
            if de.is_dir(follow_symlinks=False):
                _adopt(p, dest / de.name, exclude, rep, aside / de.name if aside else None,
                       keep_hardlinks)
                if not any(p.iterdir()):
                    p.rmdir()
            elif de.is_symlink() or de.is_file(follow_symlinks=False):
                if PLACEHOLDER.match(de.name) and not de.is_symlink():
                    if aside is not None:
                        aside.mkdir(parents=True, exist_ok=True)
                        move_file(p, unique_name(aside / de.name))
                    continue
                if keep_hardlinks and (dest / de.name).is_file() and os.path.samefile(p, dest / de.name):
                    continue  # our own hardlink from an earlier link
                rep.placed.append(place_file(p, dest / de.name))
            else:
                rep.errors.append(f"{p} is not a regular file (fifo, socket or device); left in place")
        except (MoveError, OSError) as e:
            rep.errors.append(f"could not move {p} into the store: {e}; it is still in place")


def _nearest_existing(p: Path) -> Path:
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def _remaining(folder: Path) -> int:
    try:
        return sum(1 for _ in folder.iterdir())
    except OSError:
        return 0


def link_webui(storage_root: StorageRoot | str | os.PathLike[str], webui_dir: str | os.PathLike[str],
               webui: str) -> LinkReport:
    """Link one WebUI installation to the store (idempotent). See the module doc."""
    root = (storage_root if isinstance(storage_root, StorageRoot) else StorageRoot.at(storage_root)).ensure()
    webui = normalize_webui(webui)
    wd = Path(webui_dir).expanduser().resolve()
    if not wd.is_dir():
        raise FileNotFoundError(f"WebUI folder {wd} does not exist: install the WebUI first "
                                "or pass the folder it lives in")
    if _inside(wd, root.path) or _inside(root.path, wd):
        raise ValueError(f"the WebUI folder {wd} and the store {root.path} must not contain "
                         "one another; keep them side by side")
    method = webui_link_method(webui)
    symlinks = method == "extra_model_paths" or _symlinks_work(wd)
    mpath = manifest_path(root, webui, wd)
    man = load_manifest(mpath)
    rep = LinkReport(webui, str(wd), method if symlinks else "hardlink", manifest=str(mpath))
    if not symlinks:
        rep.warnings.append(
            f"this file system does not support symbolic links ({wd}); each model file is "
            "hard-linked instead. Models added to the store later appear in the WebUI after "
            "`sdpanel storage link` runs again.")
    in_store = symlinks and method == "symlink"
    slots = _slots(root, wd, webui, in_store)
    aside = mpath.parent / "placeholders" / mpath.stem if method == "symlink" else None
    own_rels = {s.rel for s in slots}

    # 1. Move real files out of the WebUI's folders, deepest folders first so a nested
    #    folder's files reach their own kind (unet -> diffusion_models, not checkpoints).
    done: set[str] = set()
    for s in sorted(slots, key=lambda s: -s.rel.count("/")):
        folder = wd / s.rel
        if s.rel in done or not folder.is_dir() or folder.is_symlink():
            continue
        done.add(s.rel)
        if root.contains(folder):
            continue  # already the store's own folder (seen through a link of ours)
        if not _inside(folder, wd):
            rep.errors.append(f"{folder} leads outside the WebUI folder (a parent is a link); left alone")
            continue
        exclude = {wd / r for r in own_rels if r.startswith(s.rel + "/")}
        exclude |= {x.location for x in slots if not x.nested and x.location.parent == folder}
        _adopt(folder, s.target, exclude, rep, aside / s.rel if aside else None,
               keep_hardlinks=not symlinks)
        if in_store and not any(folder.iterdir()):
            folder.rmdir()  # becomes a link (or lies inside one that will)

    # 2. Make each folder see the store.
    if method == "extra_model_paths":
        mapping = {cy.yaml_key(s.rel): s.target.name for s in slots}
        for s in slots:
            if (wd / s.rel).is_symlink():
                rep.warnings.append(f"{s.rel} is a link of yours to {os.readlink(wd / s.rel)}; left as is")
        created = not (wd / cy.FILENAME).exists()
        try:
            changed = cy.write_block(wd, root.path, mapping)
        except cy.YamlError as e:
            rep.errors.append(str(e))
        else:
            (rep.linked if changed else rep.already).append(cy.FILENAME)
            man.setdefault("yaml_created", created)
    elif symlinks:
        for s in sorted(slots, key=lambda s: s.nested):
            _make_symlink(s, wd, rep)
    else:
        for s in slots:
            _make_hardlinks(s, wd, rep, man)

    man.update(webui=webui, webui_dir=str(wd), store=str(root.path), method=rep.method,
               kinds=sorted({s.kind for s in slots}),
               nested=sorted({str(s.location) for s in slots if s.nested}))
    man.setdefault("created", time.time())
    man.setdefault("moves", []).extend(
        {"from": p.src, "to": p.dest, "size": p.size, "action": p.action} for p in rep.placed)
    save_manifest(mpath, man)
    return rep


def _make_symlink(s: _Slot, wd: Path, rep: LinkReport) -> None:
    loc = s.location
    name = s.rel if not s.nested else f"{s.rel} (as {loc.parent.name}/{loc.name} in the store)"
    base = s.target.parent if s.nested else wd
    if not _inside(_nearest_existing(loc.parent), base):
        rep.errors.append(f"{loc.parent} leads outside {base} (a parent is a link); {s.rel} not linked")
        return
    if loc.is_symlink():
        if os.path.realpath(loc) == os.path.realpath(s.target):
            rep.already.append(name)
            return
        old = Path(os.path.realpath(loc))
        if not (old.name == s.target.name and (old.parent / STATE_DIR).is_dir()):
            rep.warnings.append(f"{loc} is a link of yours to {os.readlink(loc)}; left as is, so "
                                f"this WebUI does not see the store's {s.kind} there")
            return
        # Our link into another sdpanel store (the store moved, e.g. onto a persistent
        # disk): point it at this one. The old store's files stay where they are.
        loc.unlink()
        rep.warnings.append(f"{s.rel} pointed at the store {old.parent}; now at {s.target.parent}")
    if loc.is_dir():
        if s.nested:  # a real folder where our nested link goes: its files join the kind
            _adopt(loc, s.target, set(), rep, None)
        left = _remaining(loc)
        if left:
            rep.errors.append(f"{loc} still holds {left} item(s) that could not be moved; not linked")
            return
        loc.rmdir()
    elif os.path.lexists(loc):
        rep.errors.append(f"{loc} is a file where a folder belongs; move it away, then link again")
        return
    loc.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(s.target, loc.parent) if s.nested else str(s.target)
    try:
        os.symlink(target, loc, target_is_directory=True)
    except OSError as e:
        if not s.nested:
            rep.errors.append(f"cannot create the link {loc}: {e.strerror or e}")
            return
        # The store's own file system has no symlinks (e.g. Google Drive): the outer
        # folder works, only this sub-folder view is missing.
        rep.warnings.append(f"the store's file system refuses symlinks ({e.strerror or e}), so "
                            f"{s.rel} does not show the store's {s.kind}; use ComfyUI or a store "
                            "on a local disk to see them")
        return
    rep.linked.append(name)


def _make_hardlinks(s: _Slot, wd: Path, rep: LinkReport, man: dict[str, Any]) -> None:
    loc = s.location
    if loc.is_symlink() or (os.path.lexists(loc) and not loc.is_dir()):
        rep.warnings.append(f"{loc} is not a plain folder; left as is")
        return
    loc.mkdir(parents=True, exist_ok=True)
    recorded: list[str] = man.setdefault("hardlinks", [])
    made = 0
    for dirpath, _dirs, files in os.walk(s.target):
        for f in files:
            src = Path(dirpath) / f
            if src.is_symlink():
                continue
            dst = loc / src.relative_to(s.target)
            if os.path.lexists(dst):
                continue  # ours from an earlier run, or a file of the user's: keep it
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError as e:
                rep.errors.append(f"cannot hard-link {src} into {loc}: {e.strerror or e}. Without "
                                  "symlinks the store must be on the WebUI's disk (or use ComfyUI)")
                return
            recorded.append(str(dst.relative_to(wd)))
            made += 1
    (rep.linked if made else rep.already).append(f"{s.rel} ({made} hardlinks)" if made else s.rel)


def unlink_webui(storage_root: StorageRoot | str | os.PathLike[str], webui_dir: str | os.PathLike[str],
                 webui: str) -> LinkReport:
    """Undo :func:`link_webui`: our links become empty real folders, our yaml key goes,
    placeholders come back; models stay in the store. Idempotent."""
    root = storage_root if isinstance(storage_root, StorageRoot) else StorageRoot.at(storage_root)
    webui = normalize_webui(webui)
    wd = Path(webui_dir).expanduser().resolve()
    mpath = manifest_path(root, webui, wd)
    man = load_manifest(mpath)
    method = webui_link_method(webui)
    rep = LinkReport(webui, str(wd), str(man.get("method", method)), manifest=str(mpath))
    if method == "extra_model_paths":
        if cy.remove_block(wd, delete_if_empty=bool(man.get("yaml_created"))):
            rep.removed.append(cy.FILENAME)
    else:
        others = {n for m in all_manifests(root) if m.get("_path") != str(mpath)
                  for n in m.get("nested", [])}
        for s in _slots(root, wd, webui, in_store=True):
            loc = s.location
            if not (loc.is_symlink() and os.path.realpath(loc) == os.path.realpath(s.target)):
                continue
            if s.nested and str(loc) in others:
                continue  # another linked WebUI still relies on it
            loc.unlink()
            if not s.nested:
                loc.mkdir()
            rep.removed.append(s.rel if not s.nested else f"{loc.parent.name}/{loc.name} in the store")
        for s in _slots(root, wd, webui, in_store=True):
            # Nested folders (models/Stable-diffusion/unet) come back as plain folders too.
            if s.nested and s.location.name == Path(s.rel).name and _inside(_nearest_existing(wd / s.rel), wd):
                (wd / s.rel).mkdir(parents=True, exist_ok=True)
        for rel in man.get("hardlinks", []):
            p = wd / rel
            if p.is_file() and not p.is_symlink() and os.lstat(p).st_nlink > 1:
                p.unlink()  # still a hardlink (the store holds the other name): nothing is lost
        aside = mpath.parent / "placeholders" / mpath.stem
        for dirpath, _dirs, files in os.walk(aside):
            back = wd / Path(dirpath).relative_to(aside)
            if not _inside(_nearest_existing(back), wd):
                continue
            for f in files:
                if not os.path.lexists(back / f):
                    back.mkdir(parents=True, exist_ok=True)
                    shutil.move(os.path.join(dirpath, f), back / f)
        shutil.rmtree(aside, ignore_errors=True)
    mpath.unlink(missing_ok=True)
    return rep
