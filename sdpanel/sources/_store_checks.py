"""What the store already has, before and after a download: a file with the same sha256 or
the same CivitAI version (offer a link instead of a second copy), and the hash the source
publishes *now* when a verified download does not match (authors replace files silently on
CivitAI; a branch moves on Hugging Face) — asked before the file is called corrupt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdpanel.downloads import DownloadSpec, origin, sanitize_filename
from sdpanel.storage import StorageRoot

from ._errors import SourceError
from ._index import InstalledModel, LocalIndex

__all__ = ["AlreadyHave", "find_in_store", "link_instead", "published_file", "spec_target"]


@dataclass
class AlreadyHave:
    spec: DownloadSpec
    model: InstalledModel
    why: str
    """"same sha256" or "same CivitAI version"."""

    @property
    def path(self) -> Path:
        return self.model.path

    def message(self, root: StorageRoot) -> str:
        where = os.path.relpath(self.path, root.path) if root.contains(self.path) else str(self.path)
        name = self.spec.filename or self.spec.metadata.get("model_name") or self.spec.url
        return (f"{name} is already in the store as {where} ({self.why}): link it instead of "
                "downloading a second copy, or download anyway.")

    def to_dict(self, root: StorageRoot) -> dict[str, Any]:
        return {"path": str(self.path), "why": self.why, "message": self.message(root),
                "kind": self.model.kind}


def spec_target(root: StorageRoot, spec: DownloadSpec) -> Path | None:
    """Where the queue will put this spec's file (None while its name is unknown)."""
    if not spec.filename:
        return None
    folder = Path(spec.folder) if spec.folder else root.kind_dir(spec.kind)
    return folder / sanitize_filename(spec.filename)


def find_in_store(index: LocalIndex, spec: DownloadSpec) -> AlreadyHave | None:
    """The installed model this spec would duplicate (the index must be scanned). The file
    at the spec's own target is no duplicate: the queue keeps it without downloading."""
    target = spec_target(index.root, spec)

    def elsewhere(m: InstalledModel) -> bool:
        return target is None or not (m.path == target or _same_file(m.path, target))

    if spec.sha256:
        same = [m for m in index.find(spec.sha256) if elsewhere(m)]
        if same:
            return AlreadyHave(spec, same[0], "same sha256")
    version = spec.metadata.get("version_id") if spec.source == "civitai" else None
    if version is not None:
        for m in index.models:
            if m.source == "civitai" and m.version_id == int(version) and elsewhere(m) \
                    and (m.sidecar or {}).get("file_id") == spec.metadata.get("file_id"):
                return AlreadyHave(spec, m, "same CivitAI version")
    return None


def link_instead(root: StorageRoot, have: AlreadyHave) -> Path:
    """Put the file the store has where the spec would have gone (its kind folder, its
    name): a hard link (no second copy), a symlink where hard links fail. The spec's
    sidecar goes beside it so WebUIs show its metadata. Returns the linked path."""
    from sdpanel.downloads import write_sidecar

    spec = have.spec
    target = spec_target(root, spec) or root.kind_dir(spec.kind) / have.path.name
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        if target.resolve() == have.path.resolve() or _same_file(target, have.path):
            return target
        raise SourceError(f"{target.name} already exists in {folder} with other content: rename "
                          "one of them, then link again.")
    try:
        os.link(have.path, target)
    except OSError:
        target.symlink_to(have.path)
    if spec.metadata:
        write_sidecar(target, spec.source, {**spec.metadata, "linked_from": str(have.path)})
    return target


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


async def published_file(spec: DownloadSpec) -> tuple[str | None, int | None]:
    """The (sha256, size) the source publishes for this spec's file right now (no cache);
    None where it cannot say. CivitAI: the version's file by id; Hugging Face: X-Linked-Etag
    and size of the resolve URL. The API origin is the spec's own URL (mirrors, tests)."""
    from sdpanel.settings import resolve_secret

    scheme, host, port = origin(spec.url)
    base = f"{scheme}://{host}:{port}"
    meta = spec.metadata
    try:
        if spec.source == "civitai" and meta.get("version_id"):
            from ._civitai import CivitAIClient

            civ = CivitAIClient(base, resolve_secret("CIVITAI_TOKEN"), max_retries=1)
            try:
                version = await civ.version(int(meta["version_id"]))
            finally:
                await civ.close()
            for f in version.get("files") or []:
                if f.get("id") == meta.get("file_id") or (meta.get("file_id") is None and f.get("primary")):
                    sha = (f.get("hashes") or {}).get("SHA256")
                    kb = f.get("sizeKB")
                    return (str(sha).lower() if sha else None,
                            round(float(kb) * 1024) if isinstance(kb, (int, float)) else None)
            return None, None
        if spec.source == "huggingface" and meta.get("repo_id") and meta.get("path"):
            from ._hf import HFClient

            hf = HFClient(base, resolve_secret("HF_TOKEN"), max_retries=1)
            try:
                info = await hf.file_info(str(meta["repo_id"]), str(meta["path"]),
                                          str(meta.get("revision") or "main"),
                                          str(meta.get("repo_type") or "model"))
            finally:
                await hf.close()
            return info.sha256, info.size
    except SourceError:
        return None, None
    return None, None
