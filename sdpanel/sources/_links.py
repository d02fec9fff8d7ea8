"""Turn whatever a user pastes into a :class:`DownloadSpec` with the exact file pinned.

Accepted: a CivitAI model page (``/models/ID[/slug][?modelVersionId=V]``), a CivitAI
download URL (``/api/download/models/V[?fileId=F|type=…]``), a CivitAI AIR
(``urn:air:sdxl:lora:civitai:ID@V``), a Hugging Face ``blob``/``resolve`` URL, ``hf://``
or bare ``owner/repo/path/file.ext``, a GitHub release asset, ``preset:ID`` and any other
HTTP(S) link. Anything else raises :class:`LinkError` with a one-line reason.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sdpanel._configs import load_config
from sdpanel.downloads import DownloadSpec, filename_from_content_disposition

from ._context import ResolveContext
from ._errors import LinkError, SourceError
from ._http import HttpBase
from ._model_kind import ModelKind, header_from_bytes, header_length, kind_from_header

_AIR = re.compile(r"^urn:air:(?P<eco>[\w.-]+):(?P<type>[\w.-]+):(?P<src>[\w.-]+):(?P<id>[^@\s]+)"
                  r"(?:@(?P<ver>[^:\s.]+))?(?::[\w.-]+)?(?:\.\w+)?$", re.I)
_BARE_HF = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)/(?P<path>[\w./ -]+\.\w+)$")
_GITHUB_ASSET = re.compile(r"^/(?P<owner>[^/]+)/(?P<repo>[^/]+)/releases/download/(?P<tag>[^/]+)/(?P<asset>[^/]+)$")


def kind_for_civitai_type(model_type: str) -> str:
    for k in load_config("kinds.json")["kinds"]:
        if model_type in k.get("civitai_types", []):
            return str(k["id"])
    return "other"


def guess_kind(filename: str) -> str:
    """A best guess from a file name (links without metadata); callers may override."""
    name = filename.lower()
    if name.endswith(".pt") and "yolo" in name:
        return "adetailer"
    if name.startswith("sam_") or "segment_anything" in name:
        return "sam"
    if any(t in name for t in ("esrgan", "ultrasharp", "upscal", "4x", "2x_", "swinir")):
        return "upscalers"
    if "control" in name or name.startswith(("t2i-adapter", "diffusion_pytorch_model_promax")):
        return "controlnet"
    if "vae" in name or name in ("ae.safetensors",):
        return "vae"
    if "lora" in name:
        return "loras"
    if any(t in name for t in ("t5xxl", "clip_l", "clip_g", "umt5")):
        return "text_encoders"
    if "ip-adapter" in name or "ip_adapter" in name:
        return "ipadapter"
    return "other"


_HEADER_PROBE = 256 * 1024
"""First ranged read of a remote safetensors file: the header of most checkpoints fits."""


async def remote_kind(http: HttpBase, url: str, headers: dict[str, str] | None = None) -> ModelKind | None:
    """Classify a remote ``.safetensors`` by its header (one or two ranged GETs, redirects
    followed by aiohttp only when ``headers`` is empty, so no token crosses an origin).
    None on any failure: the name-based guess stands."""
    async def read(first: int, last: int) -> bytes | None:
        status, _h, body, _u = await http.request(
            "GET", url, headers={**(headers or {}), "Range": f"bytes={first}-{last}",
                                 "Accept-Encoding": "identity"},
            allow_redirects=not headers, retry_statuses=(), max_body=last - first + 1)
        return body if status in (200, 206) else None

    try:
        head = await read(0, _HEADER_PROBE - 1)
        n = header_length(head or b"")
        if head is None or n is None:
            return None
        for _ in range(8):  # a read may stop at a chunk boundary: ask for the rest
            if len(head) >= 8 + n:
                break
            rest = await read(len(head), 8 + n - 1)
            if not rest:
                return None
            head += rest
        header = header_from_bytes(head)
    except SourceError:
        return None
    return kind_from_header(header) if header else None


def _with_header_kind(meta: dict[str, Any], guessed: str, found: ModelKind | None) -> str:
    """The header's kind over the file name's guess; the reason goes to the sidecar."""
    if found is None:
        return guessed
    meta["kind_from"] = f"safetensors header: {found.reason}"
    if found.base_model and not meta.get("base_model"):
        meta["base_model"] = found.base_model
    return found.kind


def _filename_from_url(url: str) -> str | None:
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return name or None


# -- CivitAI ---------------------------------------------------------------------------

def _pick_file(files: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any] | None:
    if "fileId" in query:
        return next((f for f in files if str(f.get("id")) == query["fileId"][0]), None)
    chosen = files
    for key in ("type", "format", "size", "fp"):
        if key in query:
            want = query[key][0]
            chosen = [f for f in chosen if (f.get("type") if key == "type" else (f.get("metadata") or {}).get(key)) == want]
    if chosen is not files:
        return chosen[0] if chosen else None
    return next((f for f in files if f.get("primary")), None) or next(
        (f for f in files if f.get("type") == "Model"), files[0] if files else None)


def civitai_spec(model: dict[str, Any], version: dict[str, Any], file: dict[str, Any],
                 ctx: ResolveContext) -> DownloadSpec:
    """The spec for one CivitAI file (also used by panels that already hold the JSON)."""
    client = ctx.civitai()
    primary = bool(file.get("primary"))
    url = client.download_url(int(version["id"]), None if primary else int(file["id"]))
    sha = (file.get("hashes") or {}).get("SHA256")
    size_kb = file.get("sizeKB")
    images = version.get("images") or []
    preview = next((i.get("url") for i in images if (i.get("nsfwLevel") or 1) <= 1 and i.get("type", "image") == "image"),
                   images[0].get("url") if images else None)
    model_type = str(model.get("type") or (version.get("model") or {}).get("type") or "Other")
    kind = "vae" if file.get("type") == "VAE" else kind_for_civitai_type(model_type)
    base = ctx.civitai_base_url.rstrip("/")
    meta = {
        "source": "civitai", "model_id": model.get("id") or version.get("modelId"),
        "model_name": model.get("name") or (version.get("model") or {}).get("name"),
        "model_type": model_type, "version_id": version.get("id"), "version_name": version.get("name"),
        "file_id": file.get("id"), "file_type": file.get("type"), "format": (file.get("metadata") or {}).get("format"),
        "fp": (file.get("metadata") or {}).get("fp"), "base_model": version.get("baseModel"),
        "trained_words": list(version.get("trainedWords") or []),
        "creator": (model.get("creator") or {}).get("username"), "nsfw": bool(model.get("nsfw")),
        "sha256": sha.lower() if sha else None, "filename": file.get("name"),
        "hashes": dict(file.get("hashes") or {}), "published_at": version.get("publishedAt"),
        "source_url": f"{base}/models/{model.get('id') or version.get('modelId')}?modelVersionId={version.get('id')}",
        "preview_url": preview, "description": model.get("description"),
    }
    return DownloadSpec(url=url, kind=kind, filename=file.get("name"),
                        size=round(float(size_kb) * 1024) if size_kb is not None else None,
                        sha256=sha.lower() if sha else None, headers=ctx.civitai_headers(),
                        source="civitai", metadata=meta)


async def _civitai_version_spec(ctx: ResolveContext, model_id: int | None, version_id: int | None,
                                query: dict[str, list[str]]) -> DownloadSpec:
    client = ctx.civitai()
    if version_id is not None:
        version = await client.version(version_id)
        model_id = int(version.get("modelId") or model_id or 0) or None
        if model_id is None:
            raise LinkError(f"CivitAI version {version_id} names no model.")
        model = await client.model(model_id)
    else:
        assert model_id is not None
        model = await client.model(model_id)
        versions = model.get("modelVersions") or []
        if not versions:
            raise LinkError(f"CivitAI model {model_id} ({model.get('name')}) has no versions to download.")
        version = versions[0]
    files = version.get("files") or []
    if not files:
        why = "is archived" if model.get("mode") == "Archived" else "has no files"
        raise LinkError(f"CivitAI model {model.get('name')!r} version {version.get('name')!r} {why}: nothing to download.")
    file = _pick_file(files, query)
    if file is None:
        raise LinkError("That CivitAI link names a file the version does not have "
                        f"(files: {', '.join(str(f.get('name')) for f in files)}).")
    return civitai_spec(model, version, file, ctx)


async def _resolve_civitai_url(ctx: ResolveContext, url: str) -> DownloadSpec:
    """A pasted ``?token=`` (CivitAI's "copy download link" form) is the token for that one
    download: it moves into its ``Authorization`` header for the API host, registered with
    the redactor, and never stays in the URL."""
    query = parse_qs(urlsplit(url).query)
    pasted = (query.pop("token", None) or [""])[0].strip()
    spec = await _resolve_civitai_query(ctx, url, query)
    if pasted:
        from sdpanel.settings import register_secret

        register_secret(pasted)
        spec.headers = {**spec.headers, ctx.civitai_host: {"Authorization": f"Bearer {pasted}"}}
    return spec


async def _resolve_civitai_query(ctx: ResolveContext, url: str, query: dict[str, list[str]]) -> DownloadSpec:
    parts = urlsplit(url)
    segs = [s for s in parts.path.split("/") if s]
    if len(segs) >= 4 and segs[:3] == ["api", "download", "models"] and segs[3].isdigit():
        return await _civitai_version_spec(ctx, None, int(segs[3]), query)
    if len(segs) >= 2 and segs[0] == "models" and segs[1].isdigit():
        ver = query.get("modelVersionId", [""])[0]
        if ver and not ver.isdigit():
            raise LinkError(f"modelVersionId={ver!r} is not a number.")
        return await _civitai_version_spec(ctx, int(segs[1]), int(ver) if ver else None, {})
    if len(segs) >= 4 and segs[:3] == ["api", "v1", "model-versions"] and segs[3].isdigit():
        return await _civitai_version_spec(ctx, None, int(segs[3]), {})
    raise LinkError("That CivitAI link is not a model page (/models/ID) or a download link "
                    "(/api/download/models/VERSION).")


async def _resolve_air(ctx: ResolveContext, text: str) -> DownloadSpec:
    m = _AIR.match(text.strip())
    if not m:
        raise LinkError("Malformed AIR: expected urn:air:ECOSYSTEM:TYPE:civitai:MODEL_ID@VERSION_ID.")
    if m["src"].lower() != "civitai":
        raise LinkError(f"AIR source {m['src']!r} is not supported; paste a CivitAI AIR or the file's URL.")
    if not m["id"].isdigit() or (m["ver"] and not m["ver"].isdigit()):
        raise LinkError("A CivitAI AIR needs numeric ids: urn:air:sdxl:lora:civitai:ID@VERSION.")
    return await _civitai_version_spec(ctx, int(m["id"]), int(m["ver"]) if m["ver"] else None, {})


# -- Hugging Face ----------------------------------------------------------------------

async def hf_spec(ctx: ResolveContext, repo_id: str, path: str, revision: str = "main",
                  repo_type: str = "model") -> DownloadSpec:
    info = await ctx.hf().file_info(repo_id, path, revision, repo_type)
    base = ctx.hf_endpoint.rstrip("/")
    prefix = "/datasets" if repo_type == "dataset" else ""
    meta: dict[str, Any] = {
        "source": "huggingface", "repo_id": repo_id, "repo_type": repo_type, "path": path,
        "revision": revision, "commit": info.commit, "sha256": info.sha256,
        "filename": info.filename, "size": info.size,
        "source_url": f"{base}{prefix}/{repo_id}/blob/{revision}/{path}"}
    found = None
    if info.filename.lower().endswith(".safetensors") and ctx.probe_links:
        # The CDN/bridge URL takes no token; the resolve URL (no redirect) takes the Hub's.
        found = await remote_kind(ctx.hf(), info.location, None) if info.location else \
            await remote_kind(ctx.hf(), info.url, ctx.hf().auth_headers())
    kind = _with_header_kind(meta, guess_kind(info.filename), found)
    return DownloadSpec(url=info.url, kind=kind, filename=info.filename,
                        size=info.size, sha256=info.sha256, headers=ctx.hf_headers(),
                        source="huggingface", metadata=meta)


async def _resolve_hf_url(ctx: ResolveContext, url: str) -> DownloadSpec:
    segs = [unquote(s) for s in urlsplit(url).path.split("/") if s]
    repo_type = "model"
    if segs and segs[0] in ("datasets", "spaces"):
        repo_type, segs = segs[0][:-1], segs[1:]
    if len(segs) >= 5 and segs[2] in ("blob", "resolve"):
        return await hf_spec(ctx, f"{segs[0]}/{segs[1]}", "/".join(segs[4:]), segs[3], repo_type)
    if len(segs) == 2 or (len(segs) >= 3 and segs[2] == "tree"):
        raise LinkError(f"That is the Hugging Face repo {segs[0]}/{segs[1]}, not a file: open the "
                        "file on its 'Files' tab and paste its link.")
    raise LinkError("That Hugging Face link does not point at a file (expected "
                    ".../REPO/blob/REVISION/PATH or .../resolve/...).")


# -- everything else -------------------------------------------------------------------

async def _plain_spec(ctx: ResolveContext, url: str, source: str, meta: dict[str, Any]) -> DownloadSpec:
    filename, size, found = _filename_from_url(url), None, None
    meta = {"source": source, "source_url": url, **meta}
    if ctx.probe_links:
        probe = HttpBase(timeout=ctx.timeout, max_retries=0)
        try:
            status, hdrs, _b, _final = await probe.request("HEAD", url, retry_statuses=())
            if status < 400:
                filename = filename_from_content_disposition(hdrs.get("Content-Disposition")) or filename
                length = hdrs.get("Content-Length", "")
                size = int(length) if length.isdigit() and int(length) > 0 else None
                if (filename or "").lower().endswith(".safetensors"):
                    found = await remote_kind(probe, url)
        except SourceError:
            pass  # the queue will report an unreachable host when it tries; a spec is still useful
        finally:
            await probe.close()
    kind = _with_header_kind(meta, guess_kind(filename or ""), found)
    return DownloadSpec(url=url, kind=kind, filename=filename, size=size, source=source, metadata=meta)


async def resolve_link(text: str, ctx: ResolveContext | None = None, *, kind: str | None = None) -> DownloadSpec:
    """Resolve pasted text to a :class:`DownloadSpec`; ``kind`` overrides the guessed kind."""
    own = ctx is None
    ctx = ctx or ResolveContext.from_settings()
    try:
        spec = await _resolve(text, ctx)
    finally:
        if own:
            await ctx.aclose()
    if kind:
        spec.kind = kind
    return spec


async def _resolve(text: str, ctx: ResolveContext) -> DownloadSpec:
    raw = (text or "").strip().strip("<>\"'")
    if not raw:
        raise LinkError("Nothing to resolve: paste a CivitAI or Hugging Face link, an AIR or a URL.")
    if raw.lower().startswith("urn:air:"):
        return await _resolve_air(ctx, raw)
    if raw.lower().startswith("preset:"):
        from ._presets import preset_spec

        return preset_spec(raw.split(":", 1)[1], ctx)
    if raw.lower().startswith("hf://"):
        raw = raw[5:]
        m = _BARE_HF.match(raw)
        if not m:
            raise LinkError("hf:// links need a file: hf://OWNER/REPO/PATH/FILE.EXT.")
        return await hf_spec(ctx, m["repo"], m["path"])
    parts = urlsplit(raw)
    scheme = _bare_host_scheme(raw, ctx) if not parts.scheme else None
    if scheme:  # "civitai.com/models/123", copied from an address bar without its scheme
        raw = f"{scheme}://{raw}"
        parts = urlsplit(raw)
    if parts.scheme in ("http", "https"):
        host = (parts.hostname or "").lower()
        if not host:
            raise LinkError(f"{raw[:80]!r} has no host name.")
        if ctx.is_civitai(raw):
            return await _resolve_civitai_url(ctx, raw)
        if ctx.is_hf(raw):
            return await _resolve_hf_url(ctx, raw)
        if host == "github.com":
            m = _GITHUB_ASSET.match(parts.path)
            if not m:
                raise LinkError("That GitHub link is not a release asset (.../releases/download/TAG/FILE).")
            return await _plain_spec(ctx, raw, "github", {"repo": f"{m['owner']}/{m['repo']}", "tag": m["tag"]})
        return await _plain_spec(ctx, raw, "url", {})
    if parts.scheme:
        raise LinkError(f"Unsupported link scheme {parts.scheme!r}: paste an http(s) link, an AIR or owner/repo/file.")
    m = _BARE_HF.match(raw)
    if m and " " not in m["repo"]:
        return await hf_spec(ctx, m["repo"], m["path"])
    raise LinkError(f"Not a link: {raw[:60]!r}. Paste a CivitAI or Hugging Face link, a CivitAI AIR, "
                    "owner/repo/file.safetensors or an http(s) URL.")


# Hosts a pasted link may name without "https://".
_KNOWN_HOSTS = frozenset({"civitai.com", "www.civitai.com", "civitai.green", "huggingface.co",
                          "www.huggingface.co", "hf.co", "github.com"})


def _bare_host_scheme(raw: str, ctx: ResolveContext) -> str | None:
    """For ``host/path`` naming a site we know (or a configured base URL): the scheme to
    put in front (https, or the configured base URL's own)."""
    first = raw.split("/", 1)[0].lower()
    if "/" not in raw or not first:
        return None
    if first in _KNOWN_HOSTS:
        return "https"
    for base in (ctx.civitai_base_url, ctx.hf_endpoint):
        parts = urlsplit(base or "")
        if parts.netloc.lower() == first:
            return parts.scheme or "https"
    return None


def resolve_link_sync(text: str, ctx: ResolveContext | None = None, *, kind: str | None = None,
                      timeout: float = 120.0) -> DownloadSpec:
    """Blocking :func:`resolve_link` for the CLI and headless cells (runs on the runtime loop)."""
    from sdpanel.runtime import get_runtime

    async def run() -> DownloadSpec:
        own = ctx is None
        use = ctx or ResolveContext.from_settings()
        try:
            return await resolve_link(text, use, kind=kind)
        finally:
            if own or use._civitai is not None or use._hf is not None:
                # Clients hold an aiohttp session bound to this loop: close them here.
                await use.aclose()

    return get_runtime().submit(run(), name="resolve_link", topic="models").wait(timeout)
