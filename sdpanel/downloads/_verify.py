"""Checks a finished ``.part`` file before it may take a model's real name: an error page
served in place of the model, size, safetensors header, SHA-256."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from ._errors import DownloadError

__all__ = ["file_sha256", "looks_like_error_page", "safetensors_header", "verify_file"]

# Files whose content legitimately starts like a web page or a JSON document.
_TEXT_EXTS = {".html", ".htm", ".json", ".txt", ".md", ".yaml", ".yml", ".xml", ".csv",
              ".py", ".js", ".css", ".svg", ".ini", ".toml", ".cfg"}
_PAGE_PREFIXES = (b"<!doctype", b"<html", b"<head", b"<body", b"<?xml", b"<error")
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors reference limit
_JSON_BODY_MAX = 1 << 20  # a JSON answer in place of a model is read whole up to this size


def file_sha256(path: Path | str, block: int = 4 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def looks_like_error_page(head: bytes, content_type: str | None = None) -> bool:
    """True when the first bytes of a download are an HTML/XML page or a JSON document
    (a login page, an S3 error, ``{"error": ...}``, any API answer) rather than a binary
    model. Give the whole file as ``head`` when it is small: a complete JSON document
    counts whatever its keys. ``content_type`` does not decide: aria2 does not report it,
    and both engines must reach the same verdict on the same bytes."""
    del content_type  # kept for callers; see above
    body = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    text = body[:512].lower()
    if text.startswith(_PAGE_PREFIXES):
        return True
    if text.startswith((b"{", b"[")):
        compact = text.replace(b" ", b"").replace(b"\n", b"")
        if compact.startswith((b'{"error', b'{"message', b'{"detail', b'{"errors')):
            return True
        try:
            json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return False  # a binary model that happens to start with "{" (a safetensors length)
        return True
    return False


def safetensors_header(path: Path | str) -> dict[str, object]:
    """Parse and bounds-check a safetensors header (u64 little-endian length + JSON);
    raises DownloadError("bad_safetensors") naming what is wrong."""
    path = Path(path)
    size = path.stat().st_size

    def bad(why: str) -> DownloadError:
        return DownloadError("bad_safetensors", f"{path.name} is not a valid safetensors file "
                             f"({why}): it is damaged or not a model — delete it and download "
                             "it again, or pick another source.")

    if size < 8:
        raise bad("shorter than the 8-byte header length")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n < 2 or n > _MAX_HEADER or 8 + n > size:
            raise bad(f"header length {n} does not fit a {size}-byte file")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise bad("header is not JSON") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    data_size = size - 8 - n
    for key, info in header.items():
        if key == "__metadata__":
            if not isinstance(info, dict):
                raise bad("__metadata__ is not an object")
            continue
        if not isinstance(info, dict) or not isinstance(info.get("dtype"), str) \
                or not isinstance(info.get("shape"), list):
            raise bad(f"tensor {key[:60]!r} lacks dtype/shape")
        offs = info.get("data_offsets")
        if not (isinstance(offs, list) and len(offs) == 2
                and all(isinstance(o, int) for o in offs)
                and 0 <= offs[0] <= offs[1] <= data_size):
            raise bad(f"tensor {key[:60]!r} points outside the file")
    return header


def verify_file(
    path: Path | str,
    size: int | None,
    sha256: str | None,
    filename: str | None = None,
    *,
    content_type: str | None = None,
    computed_sha256: str | None = None,
) -> str:
    """Check a downloaded file and return its SHA-256 (lower-case hex).

    ``filename`` is the name it will get (its extension decides the format checks);
    ``computed_sha256`` is the digest an engine computed while streaming, which spares a
    second read. Raises DownloadError with reason html_instead_of_model, size_mismatch,
    bad_safetensors or checksum."""
    path = Path(path)
    name = filename or path.name.removesuffix(".part")
    ext = Path(name).suffix.lower()
    actual = path.stat().st_size
    if ext not in _TEXT_EXTS:
        with open(path, "rb") as f:
            head = f.read(1024)
            if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[") and actual <= _JSON_BODY_MAX:
                head += f.read()
        if looks_like_error_page(head):
            kind = "a JSON document" if head.lstrip()[:1] in (b"{", b"[") else "a web page"
            raise DownloadError("html_instead_of_model", f"The server sent {kind} instead of "
                                f"{name} (often a login or error page): check that the link "
                                "is a direct download and that the needed token is set.")
    if size is not None and actual != size:
        raise DownloadError("size_mismatch", f"{name} is {actual} bytes but should be {size}: "
                            "the transfer was cut short or the source changed — download it "
                            "again.")
    if ext in (".safetensors", ".sft"):
        safetensors_header(path)
    digest = (computed_sha256 or file_sha256(path)).lower()
    if sha256 and digest != sha256.lower():
        raise DownloadError("checksum", f"{name} does not match its published SHA-256 "
                            f"(expected {sha256.lower()[:12]}…, got {digest[:12]}…): the file "
                            "is corrupt or was replaced upstream — download it again.")
    return digest
