"""Async CivitAI client (public REST API v1, see shared/reference/civitai.md).

The token goes in an ``Authorization: Bearer`` header, only to the configured CivitAI
host, never in a URL. Following a download's redirect to its signed storage URL is the
downloads service's job (``sdpanel.downloads.resolve``); this client only builds the URL. Public answers are cached on disk with a TTL; the cache key is the
URL and parameters (never the token), and user-specific queries (favorites, hidden) are
not cached at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from ._cache import DiskCache
from ._errors import AuthRequiredError, NotFoundError, SourceError
from ._http import HttpBase, Sleep, error_text, json_body

DEFAULT_BASE_URL = "https://civitai.com"
FULL_CATALOGUE_URL = "https://civitai.red"
"""Since 2026-04 civitai.com (and civitai.green) show SFW content only; civitai.red holds
the full catalogue. The same API answers on each, so ids resolve anywhere."""
SFW_HOSTS = frozenset({"civitai.com", "www.civitai.com", "civitai.green", "www.civitai.green"})
SORTS = ("Highest Rated", "Most Downloaded", "Most Liked", "Most Discussed", "Most Collected",
         "Most Images", "Newest", "Oldest")
PERIODS = ("AllTime", "Year", "Month", "Week", "Day")


def full_catalogue_url(base_url: str) -> str:
    """Where NSFW-on searches go: civitai.red for the SFW-only public hosts; a mirror (any
    other base URL) serves its own catalogue, so it stays as it is."""
    host = (urlsplit(base_url).hostname or "").lower()
    return FULL_CATALOGUE_URL if host in SFW_HOSTS else base_url.rstrip("/")


@dataclass
class SearchPage:
    items: list[dict[str, Any]]
    next_cursor: str | None = None
    next_page: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class CivitAIClient(HttpBase):
    service = "CivitAI"

    def __init__(self, base_url: str = DEFAULT_BASE_URL, token: str | None = None, *,
                 cache_dir: str | os.PathLike[str] | None = None, ttl: float = 600.0,
                 enums_ttl: float = 86400.0, timeout: float = 30.0, max_retries: int = 3,
                 max_retry_wait: float = 30.0, sleep: Sleep | None = None,
                 session: aiohttp.ClientSession | None = None,
                 full_catalogue: str | None = None) -> None:
        super().__init__(timeout=timeout, max_retries=max_retries, max_retry_wait=max_retry_wait,
                         sleep=sleep, session=session)
        self.base_url = base_url.rstrip("/")
        self.full_catalogue = (full_catalogue or full_catalogue_url(self.base_url)).rstrip("/")
        """The API that answers NSFW-on searches and image lists with everything."""
        self.token = token or None
        self.cache = DiskCache(cache_dir, ttl) if cache_dir is not None else None
        self.enums_ttl = enums_ttl

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    # -- plumbing ---------------------------------------------------------------------
    async def _get_json(self, path: str, params: list[tuple[str, str]] | None = None, *,
                        cache: bool = True, ttl: float | None = None, what: str = "",
                        full: bool = False) -> Any:
        url = f"{self.full_catalogue if full else self.base_url}{path}"
        key = url + ("?" + urlencode(sorted(params)) if params else "")
        if cache and self.cache is not None:
            hit = self.cache.get(key, ttl)
            if hit is not None:
                return hit
        status, _hdrs, body, _ = await self.request("GET", url, params=params or None,
                                                    headers=self.auth_headers())
        if status == 200:
            data = json_body(body)
            if data is None:
                raise SourceError(f"CivitAI answered {url} with something that is not JSON. "
                                  "Check the civitai_base_url setting (it must be the API host).")
            if cache and self.cache is not None:
                self.cache.set(key, data)
            return data
        reason = error_text(body)
        label = what or path
        if status == 404:
            raise NotFoundError(f"CivitAI has no {label}" + (f" ({reason})" if reason else "")
                                + ". Check the id or link.", status=404)
        if status in (401, 403):
            raise AuthRequiredError(
                f"CivitAI refused {label} (HTTP {status}" + (f": {reason}" if reason else "")
                + "). Set CIVITAI_TOKEN to an API key from civitai.com/user/account.",
                status=status)
        if status == 400:
            raise SourceError(f"CivitAI rejected the request for {label}: {reason or 'bad request'}."
                              " Adjust the search options.", status=400)
        raise SourceError(f"CivitAI answered HTTP {status} for {label}"
                          + (f": {reason}" if reason else "") + ". Retry later.", status=status)

    # -- endpoints --------------------------------------------------------------------
    async def search(self, query: str | None = None, *, types: list[str] | None = None,
                     base_models: list[str] | None = None, sort: str | None = None,
                     period: str | None = None, nsfw: bool | None = None, tag: str | None = None,
                     username: str | None = None, limit: int | None = None,
                     cursor: str | None = None, page: int | None = None,
                     ids: list[int] | None = None, primary_file_only: bool | None = None,
                     favorites: bool | None = None, hidden: bool | None = None) -> SearchPage:
        """GET /api/v1/models with every documented parameter. Pass the returned
        ``next_cursor`` back as ``cursor`` for the next page."""
        if sort is not None and sort not in SORTS:
            raise SourceError(f"Unknown sort {sort!r}; use one of: {', '.join(SORTS)}.")
        if period is not None and period not in PERIODS:
            raise SourceError(f"Unknown period {period!r}; use one of: {', '.join(PERIODS)}.")
        if page is not None and query:
            raise SourceError("CivitAI cannot combine a text query with page numbers: page "
                              "with the returned cursor instead.")
        if page is not None and page * (100 if limit is None else limit) > 1000:
            raise SourceError("CivitAI serves at most 1000 results by page number: page with "
                              "the returned cursor instead.")
        params: list[tuple[str, str]] = []
        if query:
            params.append(("query", query))
        for t in types or []:
            params.append(("types", t))
        for b in base_models or []:
            params.append(("baseModels", b))
        for key, val in (("sort", sort), ("period", period), ("tag", tag), ("username", username),
                         ("cursor", cursor)):
            if val:
                params.append((key, str(val)))
        if limit is not None:
            params.append(("limit", str(max(0, min(100, int(limit))))))
        if page is not None:
            params.append(("page", str(int(page))))
        if ids:
            params.append(("ids", ",".join(str(int(i)) for i in ids)))
        if nsfw is not None:
            params.append(("nsfw", "true" if nsfw else "false"))
        if primary_file_only:
            params.append(("primaryFileOnly", "true"))
        personal = favorites is not None or hidden is not None
        if favorites is not None:
            params.append(("favorites", "true" if favorites else "false"))
        if hidden is not None:
            params.append(("hidden", "true" if hidden else "false"))
        # Per-user answers (favorites/hidden) must never land in a shared cache.
        data = await self._get_json("/api/v1/models", params, cache=not personal, what="search",
                                    full=bool(nsfw))
        meta = dict(data.get("metadata") or {})
        return SearchPage(items=list(data.get("items") or []), next_cursor=meta.get("nextCursor"),
                          next_page=meta.get("nextPage"), metadata=meta)

    async def model(self, model_id: int) -> dict[str, Any]:
        return dict(await self._get_json(f"/api/v1/models/{int(model_id)}", what=f"model {model_id}"))

    async def version(self, version_id: int) -> dict[str, Any]:
        return dict(await self._get_json(f"/api/v1/model-versions/{int(version_id)}",
                                         what=f"model version {version_id}"))

    async def by_hash(self, file_hash: str) -> dict[str, Any]:
        """The version holding a file with this SHA256/AutoV2/BLAKE3/CRC32 hash."""
        h = file_hash.strip()
        if not h or not all(c in "0123456789abcdefABCDEF" for c in h):
            raise SourceError(f"{file_hash!r} is not a hex hash; pass a SHA256, AutoV2, BLAKE3 or CRC32.")
        return dict(await self._get_json(f"/api/v1/model-versions/by-hash/{h.upper()}",
                                          what=f"file with hash {h[:12]}"))

    async def enums(self) -> dict[str, Any]:
        return dict(await self._get_json("/api/v1/enums", ttl=self.enums_ttl, what="enums"))

    async def images(self, model_version_id: int | None = None, *, model_id: int | None = None,
                     limit: int | None = None, cursor: str | None = None,
                     nsfw: bool | None = None) -> SearchPage:
        params: list[tuple[str, str]] = []
        if model_version_id is not None:
            params.append(("modelVersionId", str(int(model_version_id))))
        if model_id is not None:
            params.append(("modelId", str(int(model_id))))
        if limit is not None:
            params.append(("limit", str(max(0, min(200, int(limit))))))
        if cursor:
            params.append(("cursor", cursor))
        if nsfw is not None:
            params.append(("nsfw", "true" if nsfw else "false"))
        data = await self._get_json("/api/v1/images", params, what="images", full=bool(nsfw))
        meta = dict(data.get("metadata") or {})
        return SearchPage(items=list(data.get("items") or []), next_cursor=meta.get("nextCursor"),
                          next_page=meta.get("nextPage"), metadata=meta)

    async def latest_version(self, model_id: int) -> dict[str, Any] | None:
        versions = (await self.model(model_id)).get("modelVersions") or []
        return dict(versions[0]) if versions else None

    def download_url(self, version_id: int, file_id: int | None = None) -> str:
        url = f"{self.base_url}/api/download/models/{int(version_id)}"
        return f"{url}?fileId={int(file_id)}" if file_id is not None else url
