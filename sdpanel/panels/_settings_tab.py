"""The Settings tab: the resolved settings (secrets masked, token status only) and a few
choices a user may change from the panel. A change is an intent: it is validated by the
settings object, kept as a panel value (panels override notebook parameters), saved to
``<storage>/.sdpanel/settings.json`` and sent back through the ``settings`` trait."""

from __future__ import annotations

import dataclasses
import threading
import typing
from typing import TYPE_CHECKING, Any

import traitlets

from ._registry import register_tab

if TYPE_CHECKING:
    from sdpanel.settings import Settings

    from ._app import Panel

# What a user may change from the panel (the rest are notebook parameters), in the order
# shown. Every setting and secret has a label: the panel never shows a raw key.
EDITABLE = ("webui", "tunnel", "storage", "download_engine", "max_concurrent_downloads",
            "connections_per_file", "nsfw", "audio_muted")
LABELS = {
    "webui": "WebUI", "model_presets": "Model presets", "model_links": "Model links",
    "storage": "Storage root", "download_engine": "Download engine",
    "max_concurrent_downloads": "Downloads at the same time", "connections_per_file": "Connections per file",
    "tunnel": "Public tunnel", "gpu_index": "GPU", "launch_args": "WebUI arguments",
    "webui_package_url": "WebUI package URL", "webui_python": "WebUI Python",
    "webui_torch": "torch for a new WebUI venv", "engine_python": "Built-in engine Python",
    "generate": "Launch cell prompt", "generate_options": "Launch cell prompt options", "webui_port": "WebUI port", "launch": "Launch cell starts the WebUI",
    "keep_alive": "Keep the Launch cell running", "audio_muted": "Mute sound cues", "nsfw": "Show NSFW models",
    "clean_leftovers": "Storage cell cleans leftovers", "clean_caches": "Storage cell empties caches",
    "verify_hashes": "Verify SHA-256", "civitai_base_url": "CivitAI URL",
    "civitai_full_catalogue_url": "CivitAI full catalogue URL", "hf_base_url": "Hugging Face URL",
    "CIVITAI_TOKEN": "CivitAI token", "HF_TOKEN": "Hugging Face token", "NGROK_TOKEN": "ngrok token",
    "ZROK_TOKEN": "zrok token",
}
HELP = {
    "tunnel": "The tunnel the Launch tab ticks for you (tick more there)",
    "storage": "Empty: the platform's default. The next kernel uses it (settings.json lives in the store)",
    "CIVITAI_TOKEN": "For gated CivitAI downloads. Kept in memory for this session, never saved",
    "HF_TOKEN": "For gated Hugging Face repos. Kept in memory for this session, never saved",
    "NGROK_TOKEN": "For ngrok tunnels. Kept in memory for this session, never saved",
    "ZROK_TOKEN": "For zrok tunnels. Kept in memory for this session, never saved",
}

_lock = threading.Lock()
_panel_values: dict[str, Any] = {}


def panel_values() -> dict[str, Any]:
    """Settings changed in a panel this session (they override notebook parameters)."""
    with _lock:
        return dict(_panel_values)


def resolved_settings() -> Settings:
    from sdpanel.cells import current_settings

    return current_settings(**panel_values())


def _choice_labels(key: str, choices: list[str]) -> dict[str, str]:
    """What a choice is called where users meet it (the Launch tab shows WebUI labels)."""
    if key == "webui":
        from sdpanel.webuis import webui_info

        labels = {}
        for c in choices:
            try:
                labels[c] = webui_info(c).label
            except Exception:  # noqa: BLE001 - a WebUI without a registry row keeps its id
                labels[c] = c
        return labels
    if key == "tunnel":
        return {c: "No tunnel" if c == "none" else c for c in choices}
    if key == "download_engine":
        return {"auto": "Automatic (aria2c when available)", "aria2": "aria2c", "python": "Python"}
    return {c: c for c in choices}


def _fields() -> list[dict[str, Any]]:
    """Editable fields (in ``EDITABLE`` order), then the secrets, then the rest read-only:
    the browser draws inputs for the first two and labels the table with all of them."""
    from sdpanel.settings import SECRET_NAMES, Settings

    hints = typing.get_type_hints(Settings)
    by_name = {f.name: f for f in dataclasses.fields(Settings)}
    out: list[dict[str, Any]] = []
    for name in [*EDITABLE, *[n for n in by_name if n not in EDITABLE]]:
        f = by_name[name]
        choices = list(f.metadata.get("choices") or [])
        hint = hints[name]
        kind = "choice" if choices else "bool" if hint is bool else "int" if hint is int else "text"
        row: dict[str, Any] = {"key": name, "label": LABELS.get(name, name), "kind": kind,
                               "choices": choices, "help": HELP.get(name, f.metadata.get("help", "")),
                               "editable": name in EDITABLE}
        if choices:
            row["labels"] = _choice_labels(name, choices)
        if "min" in f.metadata:
            row["min"] = f.metadata["min"]
        out.append(row)
        if name == EDITABLE[-1]:
            out += [{"key": s, "label": LABELS.get(s, s), "kind": "secret", "help": HELP.get(s, ""),
                     "editable": True} for s in SECRET_NAMES]
    return out


def _public(settings: Settings) -> dict[str, Any]:
    from sdpanel.settings import redact, secret_status

    shown = settings.to_public_dict()
    # Tokens never travel: only whether (and where) each one is set.
    shown.update({name: redact(str(state)) for name, state in secret_status().items()})
    return shown


def _refresh(panel: Panel) -> None:
    panel.settings = _public(resolved_settings())


def _attach(panel: Panel) -> None:
    panel.settings_fields = _fields()
    _refresh(panel)


def _set(panel: Panel, msg: dict[str, Any]) -> None:
    from sdpanel.platforms import detect_platform
    from sdpanel.settings import SettingsError, load_settings, save_settings

    key = str(msg.get("key", ""))
    if key not in EDITABLE:
        raise SettingsError(f"{key!r} cannot be changed from the panel; set it in the Settings cell")
    value = msg.get("value")
    candidate = {**panel_values(), key: value}
    from sdpanel.cells import current_settings

    new = current_settings(**candidate)  # validates: a bad value raises SettingsError naming it
    with _lock:
        _panel_values[key] = getattr(new, key)
    # Persist only this change on top of what settings.json already holds: the notebook's
    # parameters and SDPANEL_* variables of this session must not become sticky defaults.
    root = new.storage or str(detect_platform().storage_root)
    on_disk = load_settings(root, env={})
    save_settings(on_disk.replace({key: getattr(new, key)}, source="panel"), root)
    _refresh(panel)
    panel.toast(f"{LABELS.get(key, key)}: {_shown(key, getattr(new, key))} (saved)")


def _shown(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    labels = {f["key"]: f.get("labels") or {} for f in _fields()}.get(key, {})
    return str(labels.get(str(value), value)) if value != "" else "(default)"


def _set_secret(panel: Panel, msg: dict[str, Any]) -> None:
    """A token typed into the panel: kept in this session's secret store (memory), never in
    settings.json, a trait or a toast. Empty clears the panel's value."""
    from sdpanel.settings import SECRET_NAMES, SettingsError, set_secret

    key = str(msg.get("key", ""))
    if key not in SECRET_NAMES:
        raise SettingsError(f"{key!r} is not a token the panel can set; tokens: {', '.join(SECRET_NAMES)}")
    value = str(msg.get("value") or "").strip()
    set_secret(key, value or None)
    _refresh(panel)
    panel.toast(f"{LABELS[key]} {'set for this session (never saved)' if value else 'cleared'}")


register_tab(
    "settings",
    "Settings",
    traits={
        "settings": traitlets.Dict(),
        "settings_fields": traitlets.List(traitlets.Dict()),
    },
    actions={"settings.set": _set, "settings.secret": _set_secret},
    attach=_attach,
    order=900,  # features first, settings last
)
