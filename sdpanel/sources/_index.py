"""What is installed in the store: model files by sha256, their sidecars, updates and
identification of unknown files through CivitAI's by-hash lookup.

Hashing is the storage service's ``ContentIndex`` (one hasher for the project, cached in
SQLite by (dev, inode, size, mtime)), so each file is hashed once across rescans.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdpanel.storage import StorageRoot, kinds
from sdpanel.storage._index import ContentIndex

from ._civitai import CivitAIClient
from ._errors import NotFoundError, SourceError
from ._sidecars import complete_sidecars, read_sidecar

MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")
_SKIP_SUFFIXES = (".part", ".aria2", ".tmp", ".json")


def is_model_file(name: str) -> bool:
    low = name.lower()
    return (not low.startswith(".") and low.endswith(MODEL_EXTENSIONS)
            and ".preview." not in low and not low.endswith(_SKIP_SUFFIXES))


@dataclass
class InstalledModel:
    path: Path
    kind: str
    size: int
    sha256: str | None
    sidecar: dict[str, Any] | None = None
    latest_version_id: int | None = None
    latest_version_name: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def source(self) -> str | None:
        return (self.sidecar or {}).get("source")

    @property
    def model_id(self) -> int | None:
        v = (self.sidecar or {}).get("model_id")
        return int(v) if isinstance(v, (int, str)) and str(v).isdigit() else None

    @property
    def version_id(self) -> int | None:
        v = (self.sidecar or {}).get("version_id")
        return int(v) if isinstance(v, (int, str)) and str(v).isdigit() else None

    @property
    def update_available(self) -> bool:
        return (self.latest_version_id is not None and self.version_id is not None
                and self.latest_version_id != self.version_id)

    def to_dict(self) -> dict[str, Any]:
        side = self.sidecar or {}
        return {"path": str(self.path), "kind": self.kind, "size": self.size, "sha256": self.sha256,
                "source": self.source, "model_id": self.model_id, "version_id": self.version_id,
                "name": side.get("model_name") or self.path.name, "base_model": side.get("base_model"),
                "update_available": self.update_available, "latest_version_id": self.latest_version_id}


class LocalIndex:
    """``LocalIndex(root).scan()`` → installed models; ``is_installed(sha)``;
    ``await check_updates(client)``; ``await identify_unknown(client)``."""

    def __init__(self, storage_root: StorageRoot | str | os.PathLike[str],
                 content_index: ContentIndex | None = None) -> None:
        self.root = storage_root if isinstance(storage_root, StorageRoot) else StorageRoot.at(storage_root)
        self.content = content_index or ContentIndex(self.root)
        self.models: list[InstalledModel] = []
        self._by_sha: dict[str, list[InstalledModel]] = {}

    def _model_files(self) -> list[tuple[Path, str]]:
        found: list[tuple[Path, str]] = []
        for k in kinds():
            folder = self.root.path / str(k["folder"])
            if not folder.is_dir():
                continue
            for dirpath, dirnames, filenames in os.walk(folder):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for name in filenames:
                    p = Path(dirpath) / name
                    if is_model_file(name) and not p.is_symlink():
                        found.append((p, str(k["id"])))
        return found

    def scan(self) -> list[InstalledModel]:
        """Hash (once; cached) and list every model file of the store. Blocking: use
        :meth:`ascan` from async code."""
        files = self._model_files()
        kind_of = {os.fspath(p): kind for p, kind in files}
        entries = self.content.scan([p for p, _ in files], hash="all") if files else []
        models = [InstalledModel(path=e.path, kind=kind_of.get(os.fspath(e.path), "other"), size=e.size,
                                 sha256=e.sha256, sidecar=read_sidecar(e.path)) for e in entries]
        models.sort(key=lambda m: (m.kind, m.path.name.lower()))
        self.models = models
        self._by_sha = {}
        for m in models:
            if m.sha256:
                self._by_sha.setdefault(m.sha256, []).append(m)
        return models

    async def ascan(self) -> list[InstalledModel]:
        return await asyncio.to_thread(self.scan)

    def is_installed(self, sha256: str | None) -> bool:
        return bool(sha256) and sha256.lower() in self._by_sha  # type: ignore[union-attr]

    def find(self, sha256: str) -> list[InstalledModel]:
        return list(self._by_sha.get(sha256.lower(), []))

    def installed_versions(self) -> set[int]:
        """CivitAI version ids present (for the browser's "installed" badge)."""
        return {m.version_id for m in self.models if m.version_id is not None and m.source == "civitai"}

    async def check_updates(self, client: CivitAIClient) -> list[InstalledModel]:
        """Ask CivitAI for each installed model's newest version (one request per model)
        and return the models with a newer version than their sidecar's."""
        by_model: dict[int, list[InstalledModel]] = {}
        for m in self.models:
            if m.source == "civitai" and m.model_id is not None:
                by_model.setdefault(m.model_id, []).append(m)
        for model_id, group in by_model.items():
            try:
                latest = await client.latest_version(model_id)
            except NotFoundError:
                for m in group:
                    m.notes.append("model no longer on CivitAI")
                continue
            if latest is None:
                continue
            for m in group:
                m.latest_version_id = int(latest["id"])
                m.latest_version_name = latest.get("name")
        # A model whose newest version is in the store too (a file of the same kind: the v2
        # VAE does not update a v1 checkpoint) has nothing to update.
        newest_here = {(m.model_id, m.kind) for m in self.models
                       if m.latest_version_id is not None and m.version_id == m.latest_version_id}
        return [m for m in self.models if m.update_available and (m.model_id, m.kind) not in newest_here]

    async def identify_unknown(self, client: CivitAIClient, *, write: bool = True,
                               previews: bool = False) -> list[InstalledModel]:
        """Look up files without a sidecar by sha256 on CivitAI; write the sidecars of the
        ones found (and their previews when asked). Returns the identified models."""
        from ._context import ResolveContext
        from ._links import civitai_spec

        ctx = ResolveContext(civitai_base_url=client.base_url, civitai_token=None, _civitai=client)
        found: list[InstalledModel] = []
        for m in self.models:
            if m.sidecar is not None or not m.sha256:
                continue
            try:
                version = await client.by_hash(m.sha256)
                model = await client.model(int(version["modelId"]))
            except NotFoundError:
                m.notes.append("not found on CivitAI by hash")
                continue
            file = next((f for f in version.get("files") or []
                         if str((f.get("hashes") or {}).get("SHA256", "")).lower() == m.sha256), None)
            if file is None:
                file = next(iter(version.get("files") or []), {"id": None, "hashes": {}})
            spec = civitai_spec(model, version, file, ctx)
            spec.metadata["sha256"] = m.sha256
            spec.metadata["identified_by"] = "sha256"
            if write:
                if previews:
                    await complete_sidecars(m.path, spec)
                else:
                    from ._sidecars import write_model_sidecar

                    write_model_sidecar(m.path, spec)
            m.sidecar = dict(spec.metadata)
            found.append(m)
        return found


__all__ = ["MODEL_EXTENSIONS", "InstalledModel", "LocalIndex", "SourceError", "is_model_file"]
