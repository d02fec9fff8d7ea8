"""Async Hugging Face Hub client: resolve URLs, HEAD metadata, tree listings with sha256.

Honours ``HF_ENDPOINT`` (mirrors, test servers) and ``HF_TOKEN``. The token goes only to
the endpoint host: a HEAD never follows a redirect to another host (the CDN), so the
token cannot leak there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import aiohttp

from ._errors import ApiUnavailableError, AuthRequiredError, NotFoundError, SourceError
from ._http import HttpBase, Sleep, error_text, json_body

DEFAULT_ENDPOINT = "https://huggingface.co"
_REDIRECTS = (301, 302, 303, 307, 308)


def hf_endpoint(env: Mapping[str, str] | None = None) -> str:
    environ = os.environ if env is None else env
    return (environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


@dataclass
class HFFileInfo:
    repo_id: str
    path: str
    revision: str
    url: str
    """The resolve URL on the endpoint (what a downloader starts from)."""
    repo_type: str = "model"
    commit: str | None = None
    sha256: str | None = None
    etag: str | None = None
    size: int | None = None
    location: str | None = None
    """The CDN URL the endpoint redirected to, when it did."""

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def _clean_etag(value: str | None) -> str | None:
    if not value:
        return None
    return value.removeprefix("W/").strip().strip('"') or None


def _is_sha256(value: str | None) -> bool:
    return bool(value) and len(value or "") == 64 and all(c in "0123456789abcdef" for c in (value or "").lower())


class HFClient(HttpBase):
    service = "Hugging Face"

    def __init__(self, endpoint: str | None = None, token: str | None = None, *, timeout: float = 30.0,
                 max_retries: int = 3, max_retry_wait: float = 30.0, sleep: Sleep | None = None,
                 session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(timeout=timeout, max_retries=max_retries, max_retry_wait=max_retry_wait,
                         sleep=sleep, session=session)
        self.endpoint = (endpoint or hf_endpoint()).rstrip("/")
        self.token = token or None

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).hostname or ""

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def resolve_url(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> str:
        prefix = "/datasets" if repo_type == "dataset" else "/spaces" if repo_type == "space" else ""
        return (f"{self.endpoint}{prefix}/{repo_id}/resolve/{quote(revision, safe='')}/"
                f"{quote(path, safe='/')}")

    def _raise(self, status: int, headers: Mapping[str, str], body: bytes, what: str, repo_id: str) -> None:
        code = headers.get("X-Error-Code", "")
        reason = headers.get("X-Error-Message") or error_text(body)
        page = f"https://huggingface.co/{repo_id}"
        if code == "GatedRepo" and status == 401:
            raise AuthRequiredError(f"{repo_id} is a gated repo: log in first, set HF_TOKEN to a token "
                                    "from huggingface.co/settings/tokens.", status=401, code=code)
        if code == "GatedRepo":
            raise AuthRequiredError(f"{repo_id} is gated and your token has no access yet: request "
                                    f"access on the model page ({page}), then retry.", status=status, code=code)
        if code == "RepoNotFound" or (status == 401 and not code):
            raise NotFoundError(f"Hugging Face repo {repo_id} was not found (or is private). Check the "
                                "repo id; for a private repo set HF_TOKEN.", status=status, code="RepoNotFound")
        if code == "RevisionNotFound":
            raise NotFoundError(f"{repo_id} has no revision used in {what}. Use a branch, tag or "
                                "commit that exists (usually 'main').", status=status, code=code)
        if code == "EntryNotFound" or status == 404:
            raise NotFoundError(f"{what} does not exist in {repo_id}. Check the file path on {page}.",
                                status=status, code=code or "EntryNotFound")
        if status in (401, 403):
            raise AuthRequiredError(f"Hugging Face refused {what} (HTTP {status}): {reason}. Set HF_TOKEN.",
                                    status=status, code=code)
        if status >= 500:
            raise ApiUnavailableError(f"Hugging Face answered HTTP {status} for {what}. Retry later.",
                                      status=status)
        raise SourceError(f"Hugging Face answered HTTP {status} for {what}"
                          + (f": {reason}" if reason else "") + ".", status=status, code=code)

    async def file_info(self, repo_id: str, path: str, revision: str = "main",
                        repo_type: str = "model") -> HFFileInfo:
        """HEAD the resolve URL (no cross-host redirects) and read commit, sha256, size."""
        url = self.resolve_url(repo_id, path, revision, repo_type)
        headers = {"Accept-Encoding": "identity", **self.auth_headers()}
        target = url
        for _hop in range(5):
            status, hdrs, _body, _ = await self.request("HEAD", target, headers=headers,
                                                        allow_redirects=False)
            location = hdrs.get("Location")
            if status in _REDIRECTS and location:
                nxt = urljoin(target, location)
                # Same-host redirects (a renamed repo) are followed; the CDN is not, so the
                # token never reaches it and we keep the endpoint's X-Linked-* headers.
                if urlsplit(nxt).hostname == self.host and "X-Linked-Size" not in hdrs:
                    target = nxt
                    continue
                return self._info(repo_id, path, revision, repo_type, url, hdrs, nxt)
            if status >= 400:
                self._raise(status, hdrs, b"", f"{path}@{revision}", repo_id)
            return self._info(repo_id, path, revision, repo_type, url, hdrs, None)
        raise SourceError(f"Hugging Face redirected {url} too many times. Check HF_ENDPOINT.")

    @staticmethod
    def _info(repo_id: str, path: str, revision: str, repo_type: str, url: str,
              hdrs: Mapping[str, str], location: str | None) -> HFFileInfo:
        linked = _clean_etag(hdrs.get("X-Linked-Etag"))
        etag = _clean_etag(hdrs.get("ETag"))
        sha = linked if _is_sha256(linked) else etag if _is_sha256(etag) else None
        size_text = hdrs.get("X-Linked-Size") or (hdrs.get("Content-Length") if location is None else None)
        size = int(size_text) if size_text and size_text.isdigit() else None
        return HFFileInfo(repo_id=repo_id, path=path, revision=revision, url=url, repo_type=repo_type,
                          commit=hdrs.get("X-Repo-Commit"), sha256=sha.lower() if sha else None,
                          etag=linked or etag, size=size, location=location)

    async def tree(self, repo_id: str, revision: str = "main", path: str = "",
                   recursive: bool = True, repo_type: str = "model") -> list[dict[str, Any]]:
        """Files of a repo with sizes and, for LFS files, their sha256 (``lfs.oid``)."""
        kind = {"dataset": "datasets", "space": "spaces"}.get(repo_type, "models")
        url = f"{self.endpoint}/api/{kind}/{repo_id}/tree/{quote(revision, safe='')}"
        if path:
            url += "/" + quote(path.strip("/"), safe="/")
        status, hdrs, body, _ = await self.request(
            "GET", url, params={"recursive": "true"} if recursive else None, headers=self.auth_headers())
        if status != 200:
            self._raise(status, hdrs, body, f"the file list at {revision}", repo_id)
        data = json_body(body)
        if not isinstance(data, list):
            raise SourceError(f"Hugging Face answered {url} with an unexpected listing. Check HF_ENDPOINT.")
        return [dict(e) for e in data]
