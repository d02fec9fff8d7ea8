"""Model presets: data files in ``configs/models/*.json`` turned into download specs
without touching the network (a preset already knows its URL, name, size and hash)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sdpanel._configs import config_dir, load_config
from sdpanel.downloads import DownloadSpec

from ._context import ResolveContext
from ._errors import LinkError

REQUIRED = ("id", "name", "kind", "base_model", "url", "filename", "sha256", "size", "verified", "source")
SOURCES = ("huggingface", "civitai", "github", "url")
_SHA = re.compile(r"^[0-9a-f]{64}$")


@cache
def presets() -> tuple[dict[str, Any], ...]:
    """Every preset, each with its ``group`` (the file's heading), in file order."""
    out: list[dict[str, Any]] = []
    for path in sorted((config_dir() / "models").glob("*.json")):
        doc = load_config(f"models/{path.name}")
        for item in doc.get("presets", []):
            out.append({"group": doc.get("group", path.stem), **item})
    return tuple(out)


def get_preset(preset_id: str) -> dict[str, Any]:
    for p in presets():
        if p["id"] == preset_id:
            return dict(p)
    raise LinkError(f"Unknown preset {preset_id!r}; known presets: {', '.join(p['id'] for p in presets())}.")


def validate_presets(items: tuple[dict[str, Any], ...] | None = None) -> list[str]:
    """Problems in the preset data (empty list when all is well)."""
    from sdpanel.storage import kind_ids

    problems: list[str] = []
    seen_ids: set[str] = set()
    seen_urls: set[str] = set()
    for p in items if items is not None else presets():
        pid = str(p.get("id"))
        problems += [f"{pid}: missing field {f!r}" for f in REQUIRED if f not in p]
        if pid in seen_ids:
            problems.append(f"{pid}: duplicate id")
        if p.get("url") in seen_urls:
            problems.append(f"{pid}: duplicate url {p.get('url')}")
        seen_ids.add(pid)
        seen_urls.add(str(p.get("url")))
        if p.get("kind") not in kind_ids():
            problems.append(f"{pid}: unknown kind {p.get('kind')!r}")
        if p.get("source") not in SOURCES:
            problems.append(f"{pid}: unknown source {p.get('source')!r}")
        if urlsplit(str(p.get("url"))).scheme != "https":
            problems.append(f"{pid}: url must be https")
        sha, size = p.get("sha256"), p.get("size")
        if sha is not None and not _SHA.match(str(sha)):
            problems.append(f"{pid}: sha256 must be 64 lower-case hex digits or null")
        if size is not None and (not isinstance(size, int) or size <= 0):
            problems.append(f"{pid}: size must be a positive integer or null")
        if p.get("verified") and (sha is None or size is None):
            problems.append(f"{pid}: verified presets need sha256 and size")
        name = str(p.get("filename") or "")
        if not name or "/" in name or "\\" in name or name.startswith("."):
            problems.append(f"{pid}: filename must be a plain file name")
    return problems


def preset_spec(preset_id: str, ctx: ResolveContext | None = None) -> DownloadSpec:
    """The download spec of a preset. Offline: no request is made. CivitAI and Hugging Face
    URLs are moved onto the configured base URL / endpoint, with the token for that host."""
    p = get_preset(preset_id)
    url = str(p["url"])
    headers: dict[str, dict[str, str]] = {}
    if ctx is not None:
        parts = urlsplit(url)
        if p["source"] == "civitai" and ctx.is_civitai(url):
            base = urlsplit(ctx.civitai_base_url)
            url = urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, ""))
            headers = ctx.civitai_headers()
        elif p["source"] == "huggingface" and ctx.is_hf(url):
            base = urlsplit(ctx.hf_endpoint)
            url = urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, ""))
            headers = ctx.hf_headers()
    meta = {"source": p["source"], "preset_id": p["id"], "model_name": p["name"],
            "base_model": p["base_model"], "source_url": p["url"], "verified": p["verified"],
            **({"civitai": p["civitai"]} if "civitai" in p else {})}
    return DownloadSpec(url=url, kind=str(p["kind"]), filename=str(p["filename"]), size=p["size"],
                        sha256=p["sha256"], headers=headers,
                        # The real source, so the sidecar (.civitai.json/.hf.json) and token
                        # handling match a pasted link; ``preset_id`` marks it as a preset.
                        source=p["source"] if p["source"] in ("civitai", "huggingface") else "preset",
                        metadata=meta)
