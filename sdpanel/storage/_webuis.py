"""Per-WebUI model folder tables (configs/webuis.json): which folder of each WebUI holds
which kind of model, and how the WebUI is made to see the store."""

from __future__ import annotations

from typing import Any

from sdpanel._configs import load_config

from ._root import kind_ids

# Names users type for the same WebUI; the table itself uses one id each.
_ALIASES = {
    "automatic1111": "a1111",
    "sd-webui": "a1111",
    "neo": "forge-neo",
    "classic": "forge-classic",
    "sd-next": "sdnext",
    "sdux": "sd-ux",
    "ux": "sd-ux",
    "comfy": "comfyui",
}


def _table() -> dict[str, dict[str, Any]]:
    return dict(load_config("webuis.json")["webuis"])


def webui_ids() -> list[str]:
    return list(_table())


def normalize_webui(name: str) -> str:
    """Canonical id for ``name`` (case, '_' and known aliases tolerated); ValueError if unknown."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    key = _ALIASES.get(key, key)
    if key not in _table():
        raise ValueError(f"Unknown WebUI {name!r}; known: {', '.join(webui_ids())}")
    return key


def webui_entry(name: str) -> dict[str, Any]:
    return dict(_table()[normalize_webui(name)])


def webui_label(name: str) -> str:
    return str(webui_entry(name).get("label", name))


def webui_link_method(name: str) -> str:
    return str(webui_entry(name)["link_method"])


def webui_folders(name: str) -> dict[str, list[str]]:
    """kind -> the WebUI's folders for it (relative paths, '/'-separated), table order."""
    out: dict[str, list[str]] = {}
    known = set(kind_ids())
    for kind, paths in webui_entry(name)["folders"].items():
        if kind not in known:  # a typo in the table must not pass silently
            raise ValueError(f"configs/webuis.json: {name} names unknown kind {kind!r}")
        out[kind] = [paths] if isinstance(paths, str) else list(paths)
    return out


def webui_extra_dirs(name: str, field: str) -> list[str]:
    """'output_dirs' or 'venv_dirs' of a WebUI (relative paths)."""
    return [str(p) for p in webui_entry(name).get(field, [])]
