"""Our block in ComfyUI's ``extra_model_paths.yaml``.

The user's own text is kept byte for byte (comments included): we only append or cut one
top-level key, ``sdpanel:``, framed by marker comments. Values are written as JSON strings,
which are valid YAML double-quoted scalars, so any path is safe. When PyYAML is importable
(it comes with jupyter-server) the user's file is parsed first — we refuse to edit a file
ComfyUI could not read anyway — and the merged result is checked.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

KEY = "sdpanel"
BEGIN = "# >>> sdpanel: managed by `sdpanel storage link`; removed by `sdpanel storage unlink` >>>"
END = "# <<< sdpanel <<<"
FILENAME = "extra_model_paths.yaml"
_TOP_KEY = re.compile(rf"^{KEY}\s*:\s*(#.*)?$")


class YamlError(ValueError):
    pass


def yaml_key(rel: str) -> str:
    """ComfyUI folder name for a package-relative folder: models/ultralytics/bbox -> ultralytics_bbox."""
    rel = rel.strip("/")
    if rel.startswith("models/"):
        rel = rel[len("models/"):]
    return rel.replace("/", "_")


def render_block(base_path: Path, mapping: dict[str, str]) -> str:
    lines = [BEGIN, f"{KEY}:", f"    base_path: {json.dumps(str(base_path))}"]
    lines += [f"    {k}: {json.dumps(v)}" for k, v in mapping.items()]
    lines.append(END)
    return "\n".join(lines) + "\n"


def strip_block(text: str) -> str:
    """``text`` without our key (and its marker comments); everything else untouched.

    Normally our block is framed by BEGIN/END (and preceded by one blank line we added).
    If a user removed the markers, the top-level ``sdpanel:`` key and its indented body go.
    """
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        bare = lines[i].rstrip("\r\n")
        if bare == BEGIN:
            if out and not out[-1].strip():
                out.pop()  # the blank line write_block put before the block
            while i < len(lines) and lines[i].rstrip("\r\n") != END:
                i += 1
            i += 1
            continue
        if _TOP_KEY.match(bare):
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i][0].isspace()):
                i += 1
            continue
        out.append(lines[i])
        i += 1
    return "".join(out)


def _parse(text: str, what: str) -> object:
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML comes with jupyter-server
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise YamlError(f"{what} is not valid YAML ({e}); ComfyUI cannot read it either. "
                        "Fix it or move it aside, then link again.") from e


def _read(path: Path) -> str:
    if path.is_symlink():
        raise YamlError(f"{path} is a symlink to {os.readlink(path)}; sdpanel does not write "
                        "through links. Replace it with a plain file, then link again.")
    return path.read_text(encoding="utf-8") if path.exists() else ""


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.sdpanel-tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # atomic: ComfyUI never reads half a file


def write_block(comfy_dir: Path, base_path: Path, mapping: dict[str, str]) -> bool:
    """Add or refresh our key. Returns True when the file changed."""
    path = comfy_dir / FILENAME
    old = _read(path)
    user = strip_block(old)
    before = _parse(user, str(path))
    if before is not None and not isinstance(before, dict):
        raise YamlError(f"{path} does not hold a YAML mapping; fix it or move it aside.")
    sep = "" if not user or user.endswith("\n") else "\n"
    new = user + sep + ("\n" if user.strip() else "") + render_block(base_path, mapping)
    merged = _parse(new, "the merged extra_model_paths.yaml")
    # Our edit must leave every key of the user's exactly as it was.
    if (isinstance(merged, dict) and isinstance(before, dict)
            and {k: v for k, v in merged.items() if k != KEY} != before):
        raise YamlError(f"merging our block into {path} would change your own keys; "
                        "nothing was written. Please report this file's layout.")
    if new == old:
        return False
    _write(path, new)
    return True


def remove_block(comfy_dir: Path, delete_if_empty: bool = False) -> bool:
    """Remove our key. Returns True when the file changed."""
    path = comfy_dir / FILENAME
    if not path.exists() or path.is_symlink():
        return False
    old = path.read_text(encoding="utf-8")
    new = strip_block(old)
    if new == old:
        return False
    if delete_if_empty and not new.strip():
        path.unlink()
        return True
    _write(path, new)
    return True
