"""Compact cards and details for the Models tab, built from CivitAI JSON, presets, Hugging
Face listings and resolved links.

Cards travel through a synced trait (and papermill stores them), so each carries only
short fields: ids, name, creator, base model, size, two stats, a thumbnail *URL* (the
browser loads the image itself) and a badge. A page of 100 cards stays near 30 KB.
"""

from __future__ import annotations

import re
from typing import Any

from sdpanel.downloads import DownloadSpec
from sdpanel.storage import kinds

# Sub-tabs of the browser: id, label and the store kinds whose CivitAI types they search.
# "other" takes every CivitAI type the first six do not.
SUBTABS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("checkpoints", "Checkpoints", ("checkpoints",)),
    ("loras", "LoRA", ("loras",)),
    ("vae", "VAE", ("vae",)),
    ("embeddings", "Embeddings", ("embeddings",)),
    ("controlnet", "ControlNet", ("controlnet",)),
    ("upscalers", "Upscalers", ("upscalers",)),
    ("other", "Other", ()),
)
EXTRA_SUBTABS = (("presets", "Presets"), ("hf", "Hugging Face"))
DESCRIPTION_LIMIT = 30_000  # characters of description HTML sent to the details view
THUMB_WIDTH = 320


def subtab_ids() -> list[str]:
    return [s[0] for s in SUBTABS] + [s[0] for s in EXTRA_SUBTABS]


def civitai_types(sub: str) -> list[str]:
    """CivitAI ``types`` for a sub-tab (from configs/kinds.json)."""
    table = {str(k["id"]): list(k.get("civitai_types", [])) for k in kinds()}  # type: ignore[call-overload]
    for sid, _label, kind_ids in SUBTABS:
        if sid == sub and kind_ids:
            return [t for k in kind_ids for t in table.get(k, [])]
    taken = {t for _sid, _l, kind_ids in SUBTABS for k in kind_ids for t in table.get(k, [])}
    return sorted({t for types in table.values() for t in types} - taken)


_SIZE_SEG = re.compile(r"/(?:original=true|width=\d+)[^/]*/")


def thumb_url(url: str | None) -> str | None:
    """CivitAI's image CDN serves resized copies: ask for a card-sized one."""
    if not url:
        return None
    if "image.civitai.com" in url and _SIZE_SEG.search(url):
        return _SIZE_SEG.sub(f"/width={THUMB_WIDTH}/", url, count=1)
    return url


def _thumb(version: dict[str, Any], model_nsfw: bool) -> tuple[str | None, bool]:
    images = [i for i in version.get("images") or [] if (i.get("type") or "image") == "image"]
    if not images:
        return None, False
    # Prefer a safe image for the card; NSFW ones are blurred by the browser.
    safe = next((i for i in images if int(i.get("nsfwLevel") or 1) <= 2), None)
    img = safe or images[0]
    level = img.get("nsfwLevel")
    nsfw = int(level) >= 4 if isinstance(level, int) else model_nsfw
    return thumb_url(img.get("url")), nsfw


def primary_file(version: dict[str, Any]) -> dict[str, Any] | None:
    files = list(version.get("files") or [])
    return next((f for f in files if f.get("primary")), None) or next(
        (f for f in files if f.get("type") == "Model"), files[0] if files else None)


def file_bytes(f: dict[str, Any]) -> int | None:
    kb = f.get("sizeKB")
    return round(float(kb) * 1024) if isinstance(kb, (int, float)) else None


class LocalState:
    """What is installed (from ``LocalIndex``): version ids, model ids, file hashes."""

    def __init__(self, versions: set[int] | None = None, models: set[int] | None = None,
                 hashes: set[str] | None = None) -> None:
        self.versions = versions or set()
        self.models = models or set()
        self.hashes = hashes or set()

    def badge(self, model_id: Any, version_id: Any, sha256: str | None) -> str:
        if version_id in self.versions or (sha256 and sha256.lower() in self.hashes):
            return "installed"
        if model_id in self.models:
            return "update"  # another version of this model is installed: the card shows the newest
        return ""

    def to_trait(self) -> dict[str, Any]:
        return {"versions": sorted(self.versions), "models": sorted(self.models)}


def civitai_card(item: dict[str, Any], local: LocalState) -> dict[str, Any] | None:
    versions = item.get("modelVersions") or []
    if not versions:
        return None
    version = versions[0]
    f = primary_file(version) or {}
    img, nsfw = _thumb(version, bool(item.get("nsfw")))
    stats = item.get("stats") or {}
    sha = (f.get("hashes") or {}).get("SHA256")
    from sdpanel.sources import kind_for_civitai_type

    return {
        "k": f"civitai:{version.get('id')}:{f.get('id')}", "src": "civitai",
        "id": item.get("id"), "v": version.get("id"), "f": f.get("id"),
        "n": str(item.get("name") or "")[:120], "c": (item.get("creator") or {}).get("username") or "",
        "b": version.get("baseModel") or "", "t": item.get("type") or "", "vn": str(version.get("name") or "")[:40],
        "s": file_bytes(f), "img": img, "x": nsfw,
        "dl": stats.get("downloadCount"), "lk": stats.get("thumbsUpCount"),
        "st": local.badge(item.get("id"), version.get("id"), sha),
        "kind": kind_for_civitai_type(str(item.get("type") or "Other")),
    }


def preset_card(p: dict[str, Any], local: LocalState) -> dict[str, Any]:
    return {"k": f"preset:{p['id']}", "src": "preset", "pid": p["id"], "n": p["name"],
            "c": p.get("group") or "", "b": p.get("base_model") or "", "t": p["kind"], "s": p.get("size"),
            "img": None, "x": False, "st": "installed" if p.get("sha256") in local.hashes else "",
            "kind": p["kind"], "vn": p.get("filename") or ""}


def spec_card(key: str, spec: DownloadSpec, local: LocalState) -> dict[str, Any]:
    """A card for a resolved link (CivitAI links keep their model/version ids)."""
    m = spec.metadata
    if spec.source == "civitai" and m.get("version_id"):
        return {"k": f"civitai:{m['version_id']}:{m.get('file_id')}", "src": "civitai",
                "id": m.get("model_id"), "v": m.get("version_id"), "f": m.get("file_id"),
                "n": m.get("model_name") or spec.filename or "", "c": m.get("creator") or "",
                "b": m.get("base_model") or "", "t": m.get("model_type") or "", "vn": m.get("version_name") or "",
                "s": spec.size, "img": thumb_url(m.get("preview_url")), "x": bool(m.get("nsfw")),
                "st": local.badge(m.get("model_id"), m.get("version_id"), spec.sha256), "kind": spec.kind,
                "link": True}
    label = {"huggingface": "Hugging Face", "github": "GitHub release"}.get(spec.source, "Link")
    return {"k": key, "src": "link", "n": spec.filename or spec.url.rsplit("/", 1)[-1], "c": m.get("repo_id") or m.get("repo") or spec.host,
            "b": m.get("base_model") or "", "t": label, "vn": m.get("revision") or "", "s": spec.size, "img": None,
            "x": False, "st": "installed" if spec.sha256 and spec.sha256 in local.hashes else "", "kind": spec.kind}


def hf_card(repo_id: str, entry: dict[str, Any], local: LocalState) -> dict[str, Any]:
    from sdpanel.sources import guess_kind

    path = str(entry.get("path"))
    sha = (entry.get("lfs") or {}).get("oid")
    return {"k": f"hf:{repo_id}:{path}", "src": "hf", "repo": repo_id, "path": path,
            "n": path.rsplit("/", 1)[-1], "c": repo_id, "b": "", "t": "Hugging Face", "vn": path,
            "s": entry.get("size"), "img": None, "x": False,
            "st": "installed" if sha and sha in local.hashes else "", "kind": guess_kind(path)}


def civitai_details(item: dict[str, Any], base_url: str, local: LocalState) -> dict[str, Any]:
    """The details view: versions, their files (format, fp, size), trained words and the
    description HTML (capped; the browser rebuilds it from a whitelist, never innerHTML)."""
    from sdpanel.sources import kind_for_civitai_type

    kind = kind_for_civitai_type(str(item.get("type") or "Other"))
    versions = []
    for v in (item.get("modelVersions") or [])[:12]:
        img, nsfw = _thumb(v, bool(item.get("nsfw")))
        files = []
        for f in v.get("files") or []:
            meta = f.get("metadata") or {}
            sha = (f.get("hashes") or {}).get("SHA256")
            files.append({"k": f"civitai:{v.get('id')}:{f.get('id')}", "f": f.get("id"), "n": f.get("name"),
                          "type": f.get("type"), "format": meta.get("format"), "fp": meta.get("fp"),
                          "size": meta.get("size"), "s": file_bytes(f), "primary": bool(f.get("primary")),
                          "st": "installed" if sha and sha.lower() in local.hashes else "",
                          "kind": "vae" if f.get("type") == "VAE" else kind})
        versions.append({"v": v.get("id"), "name": v.get("name"), "b": v.get("baseModel"),
                         "published": str(v.get("publishedAt") or "")[:10],
                         "words": [str(w)[:200] for w in (v.get("trainedWords") or [])][:30],
                         "img": img, "x": nsfw, "files": files,
                         "st": "installed" if v.get("id") in local.versions else ""})
    desc = str(item.get("description") or "")
    return {"id": item.get("id"), "n": item.get("name"), "t": item.get("type"),
            "c": (item.get("creator") or {}).get("username") or "", "tags": list(item.get("tags") or [])[:20],
            "x": bool(item.get("nsfw")), "stats": item.get("stats") or {}, "kind": kind,
            "url": f"{base_url.rstrip('/')}/models/{item.get('id')}",
            "desc": desc[:DESCRIPTION_LIMIT], "desc_cut": len(desc) > DESCRIPTION_LIMIT, "versions": versions}
