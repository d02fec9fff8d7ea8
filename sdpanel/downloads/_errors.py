"""Download failures users understand: a short ``reason`` code plus one sentence naming the
cause and the fix, always passed through ``redact`` so no token can leak into a message."""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from sdpanel._network import network_cause

__all__ = [
    "MASK", "REASONS", "DownloadError", "disk_error", "http_error", "mask_secrets", "redact_text",
    "scheme_refused",
    "unreachable_error",
]

REASONS = frozenset(
    {
        "auth", "forbidden", "early_access", "not_found", "gone", "rate_limited",
        "server_error", "unreachable", "disk_full", "checksum", "size_mismatch",
        "html_instead_of_model", "bad_safetensors", "truncated", "cancelled",
        "changed_upstream",
    }
)

# Whether keeping the .part file makes sense after this failure (a retry can continue it).
_RESUMABLE = {
    "auth": True, "forbidden": True, "early_access": True, "not_found": False, "gone": False,
    "rate_limited": True, "server_error": True, "unreachable": True, "disk_full": True,
    "checksum": False, "size_mismatch": False, "html_instead_of_model": False,
    "bad_safetensors": False, "truncated": True, "cancelled": True, "changed_upstream": False,
}
_RETRYABLE = {"rate_limited", "server_error", "unreachable", "truncated"}

# Query parameters that carry a secret or sign a URL (CivitAI ?token=, S3/R2/B2
# X-Amz-*, CloudFront Signature/Policy/Key-Pair-Id/Expires, GCS X-Goog-*, Azure sig/se/st,
# Akamai hdnts): masked wherever a URL is shown or stored.
_TOKEN_PARAM = re.compile(
    r"(?i)([?&](?:token|access_token|api_key|apikey|key|sig|signature|x-amz-signature"
    r"|x-amz-credential|x-amz-security-token|x-amz-date|x-amz-expires|policy|key-pair-id"
    r"|expires|x-goog-signature|x-goog-credential|x-goog-date|se|st|hdnts|auth)=)[^&#\s\"']+"
)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact_text(text: str) -> str:
    """Mask secrets: the settings module's ``redact`` when it is available (it knows the
    registered token values), plus token-looking query parameters and bearer values."""
    try:
        from sdpanel.settings import redact  # late: settings may import downloads

        text = redact(text)
    except Exception:  # noqa: BLE001 - settings missing or broken must not hide the error
        pass
    text = _TOKEN_PARAM.sub(r"\1" + MASK, text)
    return _BEARER.sub(r"\1***", text)


def mask_secrets(value: Any) -> Any:
    """``value`` (a string, or dicts/lists of them) with :func:`redact_text` applied to every
    string: what a journal or a sidecar may keep of URLs that carried a token or signature."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: mask_secrets(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(v) for v in value]
    return value


MASK = "***"


class DownloadError(Exception):
    """A failed download. ``reason`` is one of :data:`REASONS`; ``message`` says the cause
    and the fix in one sentence; ``retryable`` means trying again later may succeed;
    ``resumable`` means the ``.part`` file is worth keeping for that retry."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        retryable: bool | None = None,
        resumable: bool | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown download error reason {reason!r}")
        self.reason = reason
        self.message = redact_text(message)
        self.retryable = reason in _RETRYABLE if retryable is None else retryable
        self.resumable = _RESUMABLE[reason] if resumable is None else resumable
        self.status = status
        self.retry_after = retry_after
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"DownloadError({self.reason!r}, {self.message!r})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason, "message": self.message, "retryable": self.retryable,
            "resumable": self.resumable, "status": self.status,
        }


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = _header(headers, "Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            from datetime import datetime, timezone

            return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


def _header(headers: Mapping[str, str], name: str) -> str:
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return ""


def _body_text(body: str | bytes | None) -> str:
    if body is None:
        return ""
    if isinstance(body, bytes):
        body = body[:4096].decode("utf-8", "replace")
    return body[:4096]


def _body_json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _token_name(source: str) -> tuple[str, str]:
    if source == "civitai":
        return "CivitAI", "CIVITAI_TOKEN"
    if source == "huggingface":
        return "Hugging Face", "HF_TOKEN"
    return "", ""


def http_error(
    status: int,
    url: str,
    body: str | bytes | None = None,
    headers: Mapping[str, str] | None = None,
    source: str = "url",
    *,
    carried_auth: bool = False,
) -> DownloadError:
    """Map an HTTP failure (status + CivitAI body / Hugging Face ``X-Error-Code``) to a
    :class:`DownloadError` whose message tells the user what happened and what to do.
    ``carried_auth``: the failed request sent an ``Authorization`` header."""
    headers = headers or {}
    host = urlsplit(url).hostname or url
    where = redact_text(host)
    text = _body_text(body)
    data = _body_json(text)
    detail = str(data.get("message") or data.get("error") or "")
    low = (text + " " + detail).lower()
    hf_code = _header(headers, "X-Error-Code")
    service, token = _token_name(source)
    set_token = f"set {token} in the Settings cell or the environment" if token else ""

    def err(reason: str, message: str, **kw: Any) -> DownloadError:
        return DownloadError(reason, message, status=status, **kw)

    if hf_code == "GatedRepo":
        if status == 401:
            return err("auth", "This Hugging Face repo is gated and needs a Hugging Face token: "
                       "set HF_TOKEN in the Settings cell or the environment, after accepting "
                       "the model's terms on its page.")
        return err("forbidden", "This Hugging Face repo is gated and your token has not been "
                   "granted access: request access on the model's page, then retry.")
    if hf_code in ("RepoNotFound", "RevisionNotFound", "EntryNotFound"):
        what = {"RepoNotFound": "repository", "RevisionNotFound": "revision",
                "EntryNotFound": "file"}[hf_code]
        hint = " (a private repo also answers this without a token: set HF_TOKEN)" \
            if hf_code == "RepoNotFound" else ""
        return err("not_found", f"Hugging Face says the {what} does not exist{hint}: check the "
                   "link or name.")
    if status == 401:
        if "disabled downloads" in low:
            return err("forbidden", f"The creator has disabled downloads of this file on "
                       f"{where}: pick another file or version.", resumable=False)
        if token:
            return err("auth", f"This download needs a {service} token: {set_token}.")
        return err("auth", f"{where} asks for credentials (401): add the needed token or "
                   "header for this host, or use a public link.")
    if status == 403:
        if "early access" in low:
            deadline = data.get("deadline")
            until = f" until {deadline}" if deadline else ""
            return err("early_access", f"This CivitAI file is in Early Access{until}: buy "
                       "early access on its model page with the account of your CIVITAI_TOKEN, "
                       "or wait until it ends.")
        if token:
            return err("forbidden", f"{service} refused this download (403, not granted): "
                       f"make sure your {token} belongs to an account allowed to download it.")
        return err("forbidden", f"{where} refused the download (403): the link may have "
                   "expired or need credentials — get a fresh link and retry.")
    if status == 404:
        return err("not_found", f"{where} has no such file (404): check the link, version "
                   "or file id.")
    if status == 410:
        return err("gone", f"The file on {where} was removed or archived (410): pick another "
                   "version or source.")
    if status == 429:
        ra = _retry_after(headers)
        wait = f"; retrying after {ra:.0f} s" if ra else "; it will be retried after a pause"
        return err("rate_limited", f"{where} is rate-limiting downloads (429){wait} — if it "
                   "persists, wait a few minutes or use fewer parallel downloads.",
                   retry_after=ra)
    if status == 416:
        return err("server_error", f"{where} rejected the requested byte range (416): the "
                   "file changed size; the download restarts.", retryable=True,
                   resumable=False)
    if 500 <= status < 600:
        ra = _retry_after(headers)
        return err("server_error", f"{where} had a server error ({status}); it will be "
                   "retried — if it persists, try again later.", retry_after=ra)
    if status == 400 and (carried_auth or "only one auth mechanism" in low):
        # S3/B2/R2 signed URLs are an auth mechanism: a header beside one is refused.
        return err("forbidden", f"{where} refused the request because it carried an "
                   "Authorization header besides the signed link (400 \"Only one auth mechanism "
                   "allowed\"), not because the link expired: remove the header set for this host "
                   "(tokens belong to the API host only) and retry.", retryable=False)
    if status == 400:
        return err("forbidden", f"{where} rejected the request (400), often an expired "
                   "signed link: retry so the link is resolved again.", retryable=True)
    return err("server_error", f"{where} answered HTTP {status}: check the link and retry.",
               retryable=False)


def unreachable_error(url: str, exc: BaseException | None = None, *,
                      cause: str | None = None) -> DownloadError:
    """A connection-level failure (DNS, refused, reset, timeout) talking to ``url``'s host,
    in the product's one wording (``sdpanel._network``), never the library's internals."""
    host = urlsplit(url).hostname or url
    why = cause or (network_cause(host, exc) if exc is not None else f"cannot connect to {host}")
    return DownloadError("unreachable", f"Cannot download from {host}: {why}; check the "
                         "network connection or the host name (it will be retried).")


def disk_error(exc: OSError, path: str | object, *, resumable: bool = True) -> DownloadError:
    """Map an OSError while writing ``path``: a full disk gets its own reason and fix.
    ``resumable=False`` (the source sends no ranges): the retry starts over, say so."""
    again = "resume the download" if resumable else "retry (the server cannot resume, so it starts over)"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DownloadError("disk_full", f"The disk holding {path} is full: free some space "
                             f"(delete unused models or outputs) and {again}.", resumable=resumable)
    return DownloadError("disk_full", f"Could not write {path} ({exc.strerror or exc}): check "
                         f"that the folder exists and is writable, then {again}.", retryable=False,
                         resumable=resumable)


def scheme_refused(url: str, target: str) -> DownloadError | None:
    """The error for a redirect from ``url`` to a non-HTTP(S) address (ftp://, file://…),
    or None when ``target`` is http(s). Both engines refuse such redirects."""
    scheme = urlsplit(target).scheme.lower()
    if scheme in ("http", "https"):
        return None
    host = urlsplit(url).hostname or "the server"
    return DownloadError("forbidden", f"{host} redirected the download to a {scheme}:// address, "
                         "which sdpanel refuses (only http and https): ask for an https link.",
                         retryable=False, resumable=False)
