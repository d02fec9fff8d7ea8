"""Cell 2's work: resolve the settings from the cell's parameters, then show the Panel
(interactive) or print them with secrets masked (headless).

The cell passes its live namespace (``globals()``), not a snapshot. papermill injects
``-p`` values in a cell *after* the parameters cell, so a snapshot taken in cell 2 would
miss them; later cells call :func:`current_settings`, which reads the namespace again.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from typing import Any

from sdpanel.settings import SECRET_NAMES, Settings, load_settings

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# Parent processes that run notebooks without a person in front of them.
_HEADLESS_RUNNERS = ("papermill", "nbconvert", "nbclient")

_namespace: Mapping[str, Any] | None = None
_snapshot: dict[str, Any] = {}


def param_fields() -> list[dataclasses.Field[Any]]:
    """The settings a user picks in the notebook (metadata ``param``), in order."""
    return [f for f in dataclasses.fields(Settings) if f.metadata.get("param", False)]


def params_from(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The cell's parameters (upper-case setting names and token fields) found in
    ``namespace``; everything else in it is ignored."""
    names = [f.name.upper() for f in param_fields()] + list(SECRET_NAMES)
    return {name: namespace[name] for name in names if name in namespace}


def is_headless() -> bool:
    """True when no person is watching the notebook (papermill, nbconvert, a script).

    papermill sets no environment variable of its own, so in order:
    1. ``SDPANEL_HEADLESS`` = 1/0 decides when set;
    2. not inside an IPython kernel (plain Python, a terminal): headless;
    3. the request that runs this cell did not allow stdin: front ends with a person
       (JupyterLab, Notebook, Colab, VS Code) send ``allow_stdin: true`` because they can
       answer ``input()``; nbclient (papermill, nbconvert) sends false;
    4. a parent process is papermill / nbconvert / nbclient.
    """
    forced = os.environ.get("SDPANEL_HEADLESS", "").strip().lower()
    if forced in _TRUE:
        return True
    if forced in _FALSE:
        return False
    ipython_mod = sys.modules.get("IPython")
    shell = ipython_mod.get_ipython() if ipython_mod is not None else None
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return True
    allow_stdin = getattr(kernel, "_allow_stdin", None)
    if allow_stdin is False:
        return True
    return _runner_in_parents()


def _runner_in_parents(depth: int = 3) -> bool:
    try:
        import psutil

        proc = psutil.Process().parent()
        for _ in range(depth):
            if proc is None:
                return False
            if any(r in " ".join(proc.cmdline()).lower() for r in _HEADLESS_RUNNERS):
                return True
            proc = proc.parent()
    except Exception:  # noqa: BLE001 - access denied / gone: assume a person is there
        return False
    return False


def _storage_root(params: Mapping[str, Any]) -> str:
    from sdpanel.platforms import detect_platform

    return str(params.get("STORAGE") or params.get("storage") or detect_platform().storage_root)


def _changed(params: Mapping[str, Any]) -> dict[str, Any]:
    """Drop form fields still at their default: every field is written out in the cell, and
    an untouched one must not hide ``SDPANEL_<SETTING>`` or the saved settings.json."""
    defaults = Settings()
    changed: dict[str, Any] = {}
    for name, value in params.items():
        if name in SECRET_NAMES:
            changed[name] = value
            continue
        key = name.lower()
        if getattr(defaults.replace({key: value}), key) != getattr(defaults, key):
            changed[name] = value
    return changed


def current_settings(**overrides: Any) -> Settings:
    """The settings as the notebook has them now: defaults < settings.json < SDPANEL_*
    environment < the Settings cell's parameters changed from their defaults (re-read, so
    papermill's injected values count) < ``overrides``. Token fields go to the in-memory
    secret store, never to disk."""
    cell = params_from(_namespace) if _namespace is not None else {}
    params = {**_changed(cell), **overrides}
    return load_settings(_storage_root(params), params=params, strict_params=True)


def settings(namespace: Mapping[str, Any] | None = None, **params: Any) -> None:
    """Cell 2: remember the cell's namespace, resolve, then show the Panel or print the
    settings. Returns nothing so the cell shows only that; see :func:`current_settings`."""
    global _namespace, _snapshot
    if namespace is not None:
        _namespace = namespace
    resolved = current_settings(**params)
    _snapshot = params_from(_namespace) if _namespace is not None else {}
    if is_headless():
        print(resolved.describe())
        _report_injected_parameters()
        return
    try:
        from sdpanel.panels import Panel
    except ImportError as exc:  # the panels are optional until the frontend exists
        print(resolved.describe())
        print(f"(the panel cannot be shown: {exc})")
        return
    from ._panel_view import show_panel_tab

    show_panel_tab(Panel(), None)


def _report_injected_parameters() -> None:
    """After the next cell (papermill's injected-parameters cell, if any) print the
    settings again when it changed a parameter, so the output notebook shows what ran."""
    ipython_mod = sys.modules.get("IPython")
    shell = ipython_mod.get_ipython() if ipython_mod is not None else None
    if shell is None or _namespace is None:
        return

    # We are inside cell 2 now, so the first post_run_cell is cell 2's own: skip it.
    calls = [0]

    def after_next_cell(_result: Any) -> None:
        calls[0] += 1
        if calls[0] == 1:
            return
        shell.events.unregister("post_run_cell", after_next_cell)
        now = params_from(_namespace) if _namespace is not None else {}
        changed = sorted(k for k in now if now[k] != _snapshot.get(k))
        if not changed:
            return
        from sdpanel.settings import SettingsError, redact

        print(f"parameters injected: {', '.join(changed)}")
        try:
            print(current_settings().describe())
        except SettingsError as exc:
            print(redact(f"error: {exc}"))

    shell.events.register("post_run_cell", after_next_cell)
