"""Where the bytes are: per kind, per model, per WebUI (install, venv, outputs), caches,
download leftovers and free space, for the store and the work dir.

Sizes are file sizes of distinct inodes, so hardlinked copies count once. Symlinks are never
followed: a WebUI's linked model folders cost it nothing here, they are the store's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._index import ContentIndex, walk_files
from ._manifest import all_manifests, linked_kinds
from ._root import STATE_DIR, StorageRoot, human_bytes, kinds
from ._webuis import normalize_webui, webui_extra_dirs, webui_label

SIDECAR_SUFFIXES = (".civitai.json", ".hf.json")
PARTIAL_SUFFIXES = (".part", ".aria2")


def is_sidecar(name: str) -> bool:
    return name.endswith(SIDECAR_SUFFIXES) or ".preview." in name


def is_partial(name: str) -> bool:
    return name.endswith(PARTIAL_SUFFIXES)


def dir_bytes(path: str | os.PathLike[str], seen: set[tuple[int, int]] | None = None,
              skip: Iterable[str | os.PathLike[str]] = ()) -> int:
    """Bytes of the files under ``path``: distinct inodes only, links not followed."""
    seen = set() if seen is None else seen
    skip_set = {os.path.realpath(s) for s in skip}
    total = 0
    stack = [os.fspath(path)]
    while stack:
        d = stack.pop()
        if os.path.realpath(d) in skip_set:
            continue
        try:
            with os.scandir(d) as it:
                items = list(it)
        except OSError:
            continue
        for de in items:
            try:
                st = de.stat(follow_symlinks=False)
            except OSError:
                continue
            if de.is_dir(follow_symlinks=False):
                stack.append(de.path)
            elif (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def cache_dirs() -> dict[str, Path]:
    """Caches that grow while installing WebUIs and fetching models."""
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    hf_home = Path(os.environ.get("HF_HOME") or xdg / "huggingface")
    return {
        "pip": Path(os.environ.get("PIP_CACHE_DIR") or xdg / "pip"),
        "huggingface": Path(os.environ.get("HF_HUB_CACHE") or hf_home / "hub"),
    }


def disk(path: Path) -> dict[str, Any]:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    du = shutil.disk_usage(p)
    return {"path": str(path), "total": du.total, "used": du.used, "free": du.free}


@dataclass
class ModelUsage:
    path: str
    kind: str
    bytes: int
    mtime: float
    webuis: list[str]
    sha256: str | None = None
    duplicate: bool = False  # same content as another file (per cached hashes)
    sidecars: int = 0


@dataclass
class UsageReport:
    store: str
    work_dir: str | None
    kinds: dict[str, dict[str, int]] = field(default_factory=dict)
    models: list[ModelUsage] = field(default_factory=list)
    outputs_bytes: int = 0
    state_bytes: int = 0
    webuis: dict[str, dict[str, Any]] = field(default_factory=dict)
    caches: dict[str, dict[str, Any]] = field(default_factory=dict)
    partials: list[dict[str, Any]] = field(default_factory=list)
    disks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def store_bytes(self) -> int:
        return sum(k["bytes"] for k in self.kinds.values()) + self.outputs_bytes + self.state_bytes

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["store_bytes"] = self.store_bytes
        return d


def _webui_dirs(root: StorageRoot, webui_dirs: Mapping[str, Any] | Iterable[tuple[str, Any]] | None
                ) -> list[tuple[str, Path]]:
    if webui_dirs is None:  # what is linked to this store
        return [(str(m["webui"]), Path(m["webui_dir"])) for m in all_manifests(root)
                if Path(str(m.get("webui_dir", ""))).is_dir()]
    pairs = webui_dirs.items() if isinstance(webui_dirs, Mapping) else webui_dirs
    return [(normalize_webui(w), Path(d)) for w, d in pairs]


def usage_report(storage_root: StorageRoot | str | os.PathLike[str],
                 work_dir: str | os.PathLike[str] | None = None,
                 webui_dirs: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None
                 ) -> UsageReport:
    """``webui_dirs``: {webui: folder} (or pairs); None = the WebUIs linked to this store."""
    root = storage_root if isinstance(storage_root, StorageRoot) else StorageRoot.at(storage_root)
    rep = UsageReport(str(root.path), str(work_dir) if work_dir else None)
    seen: set[tuple[int, int]] = set()
    seen_by = linked_kinds(root)
    by_folder = {str(k["folder"]): str(k["id"]) for k in kinds()}
    rep.kinds = {kid: {"bytes": 0, "files": 0} for kid in by_folder.values()}
    folders = [root.path / f for f in by_folder if (root.path / f).is_dir()]
    shas: dict[str, int] = {}
    sidecars: dict[tuple[Path, str], int] = {}
    # One scan of every kind folder: cached hashes come along (duplicates marked), nothing
    # is hashed here, so a report costs a walk of the store.
    for e in ContentIndex(root).scan(folders, hash="none"):
        kid = by_folder[e.path.relative_to(root.path).parts[0]]
        name = e.path.name
        if is_partial(name):
            rep.partials.append({"path": str(e.path), "bytes": e.size})
            continue
        if (e.dev, e.ino) in seen:
            continue
        seen.add((e.dev, e.ino))
        rep.kinds[kid]["bytes"] += e.size
        if is_sidecar(name):
            owner = name.split(".preview.")[0] if ".preview." in name else name.rsplit(".", 2)[0]
            sidecars[(e.path.parent, owner)] = sidecars.get((e.path.parent, owner), 0) + 1
            continue
        rep.kinds[kid]["files"] += 1
        rep.models.append(ModelUsage(str(e.path), kid, e.size, e.mtime_ns / 1e9,
                                     seen_by.get(kid, []), e.sha256))
        if e.sha256:
            shas[e.sha256] = shas.get(e.sha256, 0) + 1
    for m in rep.models:
        p = Path(m.path)
        m.sidecars = sidecars.get((p.parent, p.with_suffix("").name), 0)
    for m in rep.models:
        m.duplicate = bool(m.sha256 and shas.get(m.sha256, 0) > 1)
    rep.models.sort(key=lambda m: -m.bytes)
    rep.outputs_bytes = dir_bytes(root.outputs_dir, seen)
    rep.state_bytes = dir_bytes(root.state_dir, seen)
    for webui, wd in _webui_dirs(root, webui_dirs):
        venvs = [wd / v for v in webui_extra_dirs(webui, "venv_dirs")]
        outs = [wd / o for o in webui_extra_dirs(webui, "output_dirs")]
        rep.webuis[f"{webui}:{wd}"] = {
            "webui": webui, "label": webui_label(webui), "dir": str(wd),
            "venv": sum(dir_bytes(v, seen) for v in venvs if v.is_dir()),
            "outputs": sum(dir_bytes(o, seen) for o in outs if o.is_dir()),
            "install": dir_bytes(wd, seen, skip=venvs + outs),
        }
    for name, path in cache_dirs().items():
        rep.caches[name] = {"path": str(path), "bytes": dir_bytes(path) if path.is_dir() else 0}
    if work_dir and Path(work_dir).is_dir():
        rep.partials += _partials(Path(work_dir), root.path)
    rep.disks["store"] = disk(root.path)
    if work_dir:
        rep.disks["work"] = disk(Path(work_dir))
    return rep


def _partials(base: Path, store: Path, depth: int = 3) -> list[dict[str, Any]]:
    """Download leftovers near the top of the work dir (not a full crawl of it)."""
    out = []
    for e in walk_files([base], skip_names=frozenset({STATE_DIR, ".git", "venv", ".venv",
                                                       "node_modules", "site-packages"})):
        rel = e.path.relative_to(base)
        if len(rel.parts) <= depth + 1 and is_partial(e.path.name) and not str(e.path).startswith(str(store) + os.sep):
            out.append({"path": str(e.path), "bytes": e.size})
    return out


def format_report(report: UsageReport, top: int = 10) -> str:
    """Plain text (headless cells, the CLI)."""
    hb = human_bytes
    lines = [f"Store {report.store}: {hb(report.store_bytes)}"]
    for kid, t in sorted(report.kinds.items(), key=lambda kv: -kv[1]["bytes"]):
        if t["bytes"]:
            lines.append(f"  {kid:<18} {hb(t['bytes']):>10}  {t['files']} file(s)")
    lines.append(f"  {'outputs':<18} {hb(report.outputs_bytes):>10}")
    lines.append(f"  {'.sdpanel (state)':<18} {hb(report.state_bytes):>10}")
    if report.models:
        lines.append(f"Largest models (of {len(report.models)}):")
        for m in report.models[:top]:
            flags = " [duplicate]" if m.duplicate else ""
            seen = f"  seen by {len(m.webuis)} WebUI(s)" if m.webuis else "  not linked to a WebUI"
            lines.append(f"  {hb(m.bytes):>10}  {m.kind}/{Path(m.path).name}{flags}{seen}")
    for w in report.webuis.values():
        lines.append(f"{w['label']} {w['dir']}: install {hb(w['install'])}, venv {hb(w['venv'])}, "
                     f"outputs {hb(w['outputs'])}")
    for name, c in report.caches.items():
        lines.append(f"Cache {name} {c['path']}: {hb(c['bytes'])}")
    if report.partials:
        lines.append(f"Download leftovers (.part/.aria2): {len(report.partials)} file(s), "
                     f"{hb(sum(p['bytes'] for p in report.partials))}")
    for label, d in report.disks.items():
        lines.append(f"Disk ({label}) {d['path']}: {hb(d['free'])} free of {hb(d['total'])}")
    return "\n".join(lines)
