"""Sidecars next to a model file: ``<stem>.civitai.json`` / ``<stem>.hf.json`` with its
source metadata and ``<stem>.preview.<ext>`` with a preview image.

The JSON writer itself is the downloads service's (``sdpanel.downloads.write_sidecar``,
atomic, same naming convention) so a downloaded model and an identified local file get the
very same sidecar; this module adds reading, previews and the "from a spec" convenience.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sdpanel.downloads import DownloadSpec, sidecar_path, write_sidecar

from ._errors import SourceError
from ._http import HttpBase

SIDECAR_SOURCES = ("civitai", "huggingface")
_IMAGE_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
MAX_PREVIEW_BYTES = 20 * 1024 * 1024


def find_sidecar(model_path: str | os.PathLike[str]) -> Path | None:
    for source in SIDECAR_SOURCES:
        p = sidecar_path(Path(model_path), source)
        if p.is_file():
            return p
    return None


def read_sidecar(model_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The sidecar's metadata, or None when there is none (or it is unreadable)."""
    p = find_sidecar(model_path)
    if p is None:
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_model_sidecar(model_path: str | os.PathLike[str], spec_or_metadata: DownloadSpec | dict[str, Any],
                        *, sha256: str | None = None) -> Path:
    """Write the sidecar for ``model_path`` from a spec or a metadata dict (whose
    ``source`` picks ``.civitai.json`` or ``.hf.json``). Atomic."""
    if isinstance(spec_or_metadata, DownloadSpec):
        meta = dict(spec_or_metadata.metadata)
        meta.setdefault("sha256", spec_or_metadata.sha256)
        meta.setdefault("source", spec_or_metadata.source)
    else:
        meta = dict(spec_or_metadata)
    if sha256:
        meta["sha256"] = sha256.lower()
    source = str(meta.get("source") or "url")
    return write_sidecar(Path(model_path), source, meta)


def preview_path(model_path: str | os.PathLike[str], ext: str) -> Path:
    p = Path(model_path)
    return p.with_name(f"{p.stem}.preview.{ext.lstrip('.').lower()}")


def _write_atomic(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".preview-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sniff_ext(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:3] == b"GIF":
        return "gif"
    return None


async def save_preview(model_path: str | os.PathLike[str], image: bytes | str, *,
                       timeout: float = 30.0) -> Path:
    """Save ``image`` (bytes, or a public image URL fetched without any token) as
    ``<stem>.preview.<ext>``. Refuses what is not an image (an HTML error page, say)."""
    if isinstance(image, (bytes, bytearray)):
        data = bytes(image)
        ext = _sniff_ext(data)
    else:
        client = HttpBase(timeout=timeout, max_retries=2)
        client.service = f"the preview host {urlsplit(image).hostname}"
        try:
            status, hdrs, data, _ = await client.request("GET", image, max_body=MAX_PREVIEW_BYTES)
        finally:
            await client.close()
        if status != 200:
            raise SourceError(f"Could not fetch the preview image (HTTP {status}) from {image}. "
                              "The model is fine; retry later for its preview.", status=status)
        ctype = hdrs.get("Content-Type", "").split(";")[0].strip().lower()
        ext = _IMAGE_EXT.get(ctype) or _sniff_ext(data)
    if not ext:
        raise SourceError("The preview is not a PNG, JPEG, WebP or GIF image; not saved.")
    target = preview_path(model_path, ext)
    _write_atomic(target, data)
    return target


async def complete_sidecars(model_path: str | os.PathLike[str], spec: DownloadSpec) -> tuple[Path, Path | None]:
    """Sidecar plus preview (when the metadata names one) for a finished download.
    A preview that cannot be fetched is skipped: it never fails the download."""
    side = write_model_sidecar(model_path, spec)
    url = spec.metadata.get("preview_url")
    preview = None
    if url:
        try:
            preview = await save_preview(model_path, str(url))
        except SourceError:
            preview = None
    return side, preview
