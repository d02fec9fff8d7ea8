"""The Settings tab: the resolved settings (secrets masked, token status only) and a few
choices a user may change from the panel. A change is an intent: it is validated by the
settings object, kept as a panel value (panels override notebook parameters), saved to
``<storage>/.sdpanel/settings.json`` and sent back through the ``settings`` trait."""

from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING, Any

import traitlets

from ._registry import register_tab

if TYPE_CHECKING:
    from sdpanel.settings import Settings

    from ._app import Panel

# The choices worth changing from a panel; the rest are notebook parameters.
EDITABLE = ("webui", "tunnel", "download_engine")
LABELS = {"webui": "WebUI", "tunnel": "Tunnel", "download_engine": "Download engine"}

_lock = threading.Lock()
_panel_values: dict[str, Any] = {}


def panel_values() -> dict[str, Any]:
    """Settings changed in a panel this session (they override notebook parameters)."""
    with _lock:
        return dict(_panel_values)


def resolved_settings() -> Settings:
    from sdpanel.cells import current_settings

    return current_settings(**panel_values())


def _fields() -> list[dict[str, Any]]:
    from sdpanel.settings import Settings

    out: list[dict[str, Any]] = []
    for f in dataclasses.fields(Settings):
        if f.name not in EDITABLE:
            continue
        choices = f.metadata.get("choices")
        kind = "choice" if choices else "bool" if f.type in (bool, "bool") else "text"
        out.append({"key": f.name, "label": LABELS.get(f.name, f.name), "kind": kind,
                    "choices": list(choices or []), "help": f.metadata.get("help", "")})
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
    panel.toast(f"{key} = {getattr(new, key)} (saved)")


register_tab(
    "settings",
    "Settings",
    traits={
        "settings": traitlets.Dict(),
        "settings_fields": traitlets.List(traitlets.Dict()),
    },
    actions={"settings.set": _set},
    attach=_attach,
    order=900,  # features first, settings last
)
