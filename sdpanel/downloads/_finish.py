"""From a finished ``.part`` file to a model under its real name.

Verification (size, sha256, error pages, safetensors header) and naming belong to
``_verify`` / ``_naming``; this module orders them: verify the part, pick the final name
(same name + same hash → already there; same name + other content → a distinct name),
move it into place without ever overwriting, then write the source sidecar.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ._engine import TransferResult
from ._errors import DownloadError, mask_secrets
from ._item import DownloadItem
from ._naming import final_name_for, sanitize_filename
from ._spec import DownloadSpec
from ._verify import verify_file

__all__ = ["already_present", "finalize", "published_now", "remove_part", "set_hash_recheck",
           "sidecar_path", "target_name", "write_sidecar"]

SIDECAR_SUFFIX = {"civitai": ".civitai.json", "huggingface": ".hf.json"}

HashRecheck = Callable[[DownloadSpec], Awaitable["tuple[str | None, int | None]"]]
_hash_recheck: HashRecheck | None = None


def set_hash_recheck(fn: HashRecheck | None) -> None:
    """Register how to ask a source for the (sha256, size) it publishes now
    (``sdpanel.sources`` does on import: this layer may not import it)."""
    global _hash_recheck
    _hash_recheck = fn


async def published_now(spec: DownloadSpec) -> tuple[str | None, int | None]:
    """What the spec's source publishes for its file right now; (None, None) when unknown."""
    if _hash_recheck is None:
        return None, None
    try:
        sha, size = await _hash_recheck(spec)
    except Exception:  # noqa: BLE001 - a failed lookup must not hide the original failure
        return None, None
    return (sha.lower() if sha else None), size


async def _accept_if_replaced_upstream(spec: DownloadSpec, digest: str, name: str) -> None:
    """A verified hash did not match: ask the source again before calling the file
    corrupt. Authors replace CivitAI files silently; when the source now publishes the
    hash we computed, the file is the new one and is kept. Raises the checksum error
    otherwise."""
    expected = (spec.sha256 or "").lower()
    published, _size = await published_now(spec)
    if published and published == digest:
        spec.metadata["sha256_replaced"] = expected  # what the source published when queued
        spec.metadata["sha256"] = spec.sha256 = digest
        return
    now = (f"; {spec.source} publishes {published[:12]}… now, which it does not match either"
           if published and published != expected else
           "; asked again, the source still publishes that hash" if published else "")
    raise DownloadError("checksum", f"{name} does not match its published SHA-256 (expected "
                        f"{expected[:12]}…, got {digest[:12]}…{now}): the file is corrupt — "
                        "download it again.")


def target_name(spec: DownloadSpec, hint: str | None, current: str) -> str:
    """The final file name: the API's name, else the storage's Content-Disposition, else
    what we had (the URL's last segment), sanitised."""
    return sanitize_filename(spec.filename or hint or current)


async def already_present(folder: Path, name: str, sha256: str | None, size: int | None = None) -> Path | None:
    """The file in ``folder`` named ``name`` (or a numbered variant) that already has the
    expected hash: nothing to download. Hashing runs in a thread (files are large)."""
    if not sha256:
        return None
    path, present = await asyncio.to_thread(final_name_for, folder, name, sha256, size=size)
    return path if present else None


def remove_part(part: Path) -> None:
    """Delete a part file and the engines' companions (aria2's control file)."""
    for p in (part, part.with_name(part.name + ".aria2")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


async def finalize(item: DownloadItem, spec: DownloadSpec, part: Path, result: TransferResult,
                   folder: Path) -> tuple[Path, str]:
    """Verify ``part`` and move it to its final name; returns (final path, sha256).
    Raises DownloadError (the part is then removed or kept per the error) on a bad file."""
    name = item.name
    if not spec.filename and result.filename and item.name_guessed:
        name = sanitize_filename(result.filename)
    sha = await asyncio.to_thread(verify_file, part, spec.size, None, name,
                                  content_type=result.content_type,
                                  computed_sha256=result.sha256)
    if spec.sha256 and sha != spec.sha256.lower():
        await _accept_if_replaced_upstream(spec, sha, name)
    size = part.stat().st_size
    for _ in range(5):  # another download may take the free name between check and link
        final, same = await asyncio.to_thread(final_name_for, folder, name, sha, size=size)
        if same:
            remove_part(part)
            return final, sha
        try:
            _place(part, final)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"could not find a free name for {name} in {folder}")
    with contextlib.suppress(FileNotFoundError):
        part.with_name(part.name + ".aria2").unlink()
    if spec.metadata:
        meta = dict(spec.metadata)
        meta["sha256"] = meta.get("sha256") or sha  # the verified hash when the API had none
        meta.setdefault("source", spec.source)
        write_sidecar(final, spec.source, meta)
    return final, sha


def _place(part: Path, final: Path) -> None:
    """Rename without overwriting: a hard link fails if ``final`` appeared meanwhile."""
    try:
        os.link(part, final)
    except FileExistsError:
        raise
    except OSError as exc:
        # File systems without hard links: the name was just checked free.
        if final.exists():
            raise FileExistsError(errno.EEXIST, "target exists", str(final)) from exc
        os.replace(part, final)
        return
    part.unlink()


def sidecar_path(final: Path, source: str) -> Path:
    """``model.safetensors`` → ``model.civitai.json`` (the WebUIs' sidecar convention)."""
    suffix = SIDECAR_SUFFIX.get(source, f".{source}.json")
    return final.with_name(final.stem + suffix)


def write_sidecar(final: Path, source: str, metadata: dict[str, Any]) -> Path:
    path = sidecar_path(final, source)
    fd, tmp = tempfile.mkstemp(prefix=".sidecar-", suffix=".tmp", dir=final.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(mask_secrets(metadata), fh, indent=2, sort_keys=True, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
