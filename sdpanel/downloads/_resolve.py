"""Resolve an API download URL (CivitAI, Hugging Face) to the storage URL that has the bytes.

We follow the API's redirect ourselves so the token travels only to the API host: the
request carries ``Authorization`` and does not follow redirects; the ``Location`` it
answers (a signed storage URL on another host) goes to the byte mover with no token.
CivitAI's ``?token=`` query form is never used: tokens stay out of URLs, logs and argv.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import parse_qs, urljoin, urlsplit

import aiohttp

from ._errors import http_error, unreachable_error
from ._spec import DownloadSpec, origin

__all__ = ["SOURCE_TOKENS", "Resolved", "auth_headers", "detect_source", "resolve"]

SOURCE_TOKENS = {"civitai": "CIVITAI_TOKEN", "huggingface": "HF_TOKEN"}
_MAX_HOPS = 5
# A non-browser User-Agent: CivitAI answers browser UAs with an HTML login page.
USER_AGENT = "sdpanel (+https://github.com/sdpanel)"


class Resolved(NamedTuple):
    url: str
    """The byte URL (signed storage URL, or the spec's URL for plain links)."""
    headers: dict[str, str]
    """Headers for ``url``'s host only (empty when the redirect left the API host)."""
    filename: str | None
    """Raw name from ``response-content-disposition`` / ``Content-Disposition``, unsanitised."""


def detect_source(spec: DownloadSpec) -> str:
    """"civitai" / "huggingface" for their download URLs (also on mirrors and test servers,
    recognised by path), else the spec's own source."""
    if spec.source in SOURCE_TOKENS:
        return spec.source
    path = urlsplit(spec.url).path
    if path.startswith("/api/download/models/"):
        return "civitai"
    host = spec.host
    if "/resolve/" in path and (host.endswith("huggingface.co") or host.endswith("hf.co")):
        return "huggingface"
    return spec.source


def _token(name: str, tokens: Mapping[str, str | None] | None) -> str | None:
    if tokens is not None:
        return tokens.get(name)
    try:
        from sdpanel.settings import resolve_secret
    except ImportError:  # settings not importable: the environment is the only store
        import os

        return os.environ.get(name) or None
    return resolve_secret(name)


def auth_headers(spec: DownloadSpec, tokens: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """Headers for the spec's own (API) host: its registered headers plus the source's
    token as ``Authorization: Bearer`` when one is set and none was given."""
    headers = spec.headers_for(spec.url)
    name = SOURCE_TOKENS.get(detect_source(spec))
    if name and not any(k.lower() == "authorization" for k in headers):
        token = _token(name, tokens)
        if token:
            headers["Authorization"] = f"Bearer {token}"
    return headers


def _filename_from_url(url: str) -> str | None:
    """The name a signed URL promises in ``response-content-disposition`` (S3/R2/B2 style)."""
    values = parse_qs(urlsplit(url).query).get("response-content-disposition")
    return cd_filename(values[0]) if values else None


def cd_filename(value: str | None) -> str | None:
    """File name from a Content-Disposition value (RFC 6266, ``filename*`` preferred)."""
    if not value:
        return None
    from ._naming import filename_from_content_disposition

    return filename_from_content_disposition(value)


def _carries_auth(headers: Mapping[str, str]) -> bool:
    return any(k.lower() == "authorization" for k in headers)


async def resolve(spec: DownloadSpec, session: aiohttp.ClientSession,
                  tokens: Mapping[str, str | None] | None = None,
                  timeout: float = 30.0) -> Resolved:
    """Find the byte URL for ``spec``. Plain links without headers are returned as they
    are (the engines follow their redirects: nothing secret to leak). Raises
    :class:`~sdpanel.downloads._errors.DownloadError` with a user-facing message."""
    source = detect_source(spec)
    headers = auth_headers(spec, tokens)
    if source not in SOURCE_TOKENS and not headers:
        return Resolved(spec.url, {}, _filename_from_url(spec.url))
    url = spec.url
    api_origin = origin(url)
    for _hop in range(_MAX_HOPS):
        try:
            async with session.get(
                url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers},
                allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                status = resp.status
                if status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    nxt = urljoin(url, resp.headers["Location"])
                    if origin(nxt) != api_origin:
                        # Left the API origin (another host, or another port of the same
                        # host): the token must not follow. Hand the signed URL on.
                        return Resolved(nxt, {}, _filename_from_url(nxt))
                    url = nxt
                    continue
                if status >= 400:
                    body = await resp.content.read(4096)
                    raise http_error(status, url, body, dict(resp.headers), source,
                                     carried_auth=_carries_auth(headers))
                # The API host serves the bytes itself (a mirror): same host, same headers.
                name = cd_filename(resp.headers.get("Content-Disposition")) or _filename_from_url(url)
                return Resolved(url, headers, name)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError, OSError) as exc:
            raise unreachable_error(url, exc) from None
    raise http_error(508, url, None, {}, source)
