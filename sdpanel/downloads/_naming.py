"""File names from outside data made safe: Content-Disposition parsing (RFC 6266 / RFC 8187),
sanitising, and choosing the final name next to files already in the store."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes, urlsplit

__all__ = [
    "filename_from_content_disposition",
    "filename_from_url",
    "final_name_for",
    "sanitize_filename",
]

MAX_NAME_BYTES = 200
_RESERVED_CHARS = re.compile(r'[<>:"|?*\\/]')
# Control characters (Cc) and the invisible ones that change how a name reads: bidi
# overrides/isolates (U+202E shows "model\u202egpj.ckpt" as "modelkpc.jpg"), zero-width
# marks, BOM, line separators.
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}
_WIN_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                *(f"LPT{i}" for i in range(1, 10))}
_PARAM = re.compile(
    r"""\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)\s*(?:;|$)""", re.DOTALL
)


def _unquote_string(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _ext_value(value: str) -> str | None:
    """RFC 8187 ``charset'lang'pct-encoded``; None when malformed or an unknown charset."""
    parts = _unquote_string(value).split("'", 2)
    if len(parts) != 3:
        return None
    charset = parts[0].strip().lower() or "utf-8"
    if charset not in ("utf-8", "iso-8859-1", "latin-1", "us-ascii"):
        return None
    try:
        return unquote_to_bytes(parts[2]).decode(charset)
    except (LookupError, UnicodeDecodeError):
        return None


def filename_from_content_disposition(header: str | None) -> str | None:
    """The file name a Content-Disposition header carries, unsanitised. ``filename*`` (RFC
    8187, e.g. ``UTF-8''na%C3%AFve.safetensors``) wins over ``filename``; quoted strings are
    unescaped. None when the header names no file."""
    if not header:
        return None
    _, _, params = header.partition(";")
    plain: str | None = None
    extended: str | None = None
    for m in _PARAM.finditer(params):
        key, value = m.group(1).lower(), m.group(2)
        if key == "filename*" and extended is None:
            extended = _ext_value(value)
        elif key == "filename" and plain is None:
            plain = _unquote_string(value)
            if "%" in plain and plain.isascii():
                # Non-standard but common: servers percent-encode the plain parameter too.
                decoded = unquote(plain)
                plain = decoded if "\ufffd" not in decoded else plain
    name = extended or plain
    return name if name else None


def filename_from_url(url: str) -> str | None:
    """The last path component of ``url`` (percent-decoded), unsanitised; None if empty."""
    path = urlsplit(url).path
    last = unquote(path.rstrip("/").rsplit("/", 1)[-1]) if path else ""
    return last or None


def _truncate_utf8(text: str, limit: int) -> str:
    raw = text.encode("utf-8")[:limit]
    return raw.decode("utf-8", "ignore")


def sanitize_filename(name: str | None) -> str:
    """A safe single path component: the last component of ``name`` with no separators,
    no ``..``, no control or invisible format characters (bidi overrides, zero-width), no Windows-reserved characters or device names, no
    leading dots/spaces, at most 200 UTF-8 bytes (keeping the extension); "download" when
    nothing usable is left."""
    name = unicodedata.normalize("NFC", name or "")
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _INVISIBLE_CATEGORIES)
    # Take the last component of any path (either separator), as browsers do.
    name = re.split(r"[\\/]", name)[-1]
    name = _RESERVED_CHARS.sub("_", name)
    name = name.strip().lstrip(". ").rstrip(". ")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    if stem.upper() in _WIN_DEVICES or name.upper() in _WIN_DEVICES:
        name = "_" + name
        stem = "_" + stem
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        ext_b = len(ext.encode("utf-8")) + 1
        if ext and ext_b <= 20:
            stem = _truncate_utf8(stem, MAX_NAME_BYTES - ext_b).rstrip(". ")
            name = f"{stem}.{ext}"
        else:
            name = _truncate_utf8(name, MAX_NAME_BYTES).rstrip(". ")
    return name or "download"


def _numbered(name: str, n: int) -> str:
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return f"{name} ({n})"
    return f"{stem} ({n}).{ext}"


def final_name_for(
    folder: Path | str, name: str, sha256: str | None, *, size: int | None = None
) -> tuple[Path, bool]:
    """Where a file named ``name`` with content ``sha256`` goes in ``folder``.

    Returns ``(path, already_present)``: the same name (or one of its numbered variants)
    with the same hash → that path and True (nothing to download or rename); a free name →
    ``(path, False)``; same name but other content → ``name (2).ext`` ... With no hash the
    content cannot be compared, so an existing name always yields a distinct new name (the
    queue can call again with the computed hash once the download finished). ``size``, when
    known, avoids hashing files whose size already differs."""
    from ._verify import file_sha256  # late: _verify imports nothing from here

    folder = Path(folder)
    safe = sanitize_filename(name)
    want = sha256.lower() if sha256 else None
    for n in range(1, 10_000):
        candidate = folder / (safe if n == 1 else _numbered(safe, n))
        if candidate.resolve().parent != folder.resolve():
            raise ValueError(f"file name {name!r} escapes {folder}")
        if not candidate.exists() and not candidate.is_symlink():
            return candidate, False
        if want and candidate.is_file():
            if size is not None and candidate.stat().st_size != size:
                continue
            if file_sha256(candidate) == want:
                return candidate, True
    raise FileExistsError(f"too many files named like {safe!r} in {folder}")
