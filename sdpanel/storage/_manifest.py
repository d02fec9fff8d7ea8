"""Link manifests: ``<store>/.sdpanel/links/<webui>-<hash of its folder>.json`` records what
``link`` did to one WebUI folder (links made, files moved into the store, placeholders set
aside) so ``unlink`` can undo exactly that, and the usage report knows who sees which kind."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ._root import StorageRoot


def manifest_path(root: StorageRoot, webui: str, webui_dir: Path) -> Path:
    digest = hashlib.sha256(str(webui_dir).encode()).hexdigest()[:12]
    return root.state_path("links", f"{webui}-{digest}.json")


def load_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ValueError(f"link manifest {path} is unreadable ({e}); move it aside and link again") from e
    return data if isinstance(data, dict) else {}


def save_manifest(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def all_manifests(root: StorageRoot) -> list[dict[str, Any]]:
    """Every WebUI folder currently linked to this store."""
    d = root.state_dir / "links"
    out = []
    for p in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            m = load_manifest(p)
        except ValueError:
            continue
        if m:
            m["_path"] = str(p)
            out.append(m)
    return out


def linked_kinds(root: StorageRoot) -> dict[str, list[str]]:
    """kind -> labels of the linked WebUIs that see it (from the manifests)."""
    out: dict[str, list[str]] = {}
    for m in all_manifests(root):
        for kind in m.get("kinds", []):
            out.setdefault(kind, [])
            label = f"{m.get('webui')} ({m.get('webui_dir')})"
            if label not in out[kind]:
                out[kind].append(label)
    return out
