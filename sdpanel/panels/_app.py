"""``sdpanel.Panel()``: the one anywidget app — header (platform, system monitor), tabs
from the registry, and a live view that can move into the JupyterLab sidebar.

Trait ownership: ``platform``, ``system``, ``tabs`` are runtime-owned (written here and by
the publisher); ``active_tab`` is UI-owned (written by the browser); ``in_sidebar`` is
set by :meth:`Panel.show_in_sidebar` or the view's button. User intents arrive as
``{"action": ...}`` messages and go to the tab that registered the action.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol

import anywidget
import traitlets

from sdpanel.runtime import Handle, Publisher, get_runtime
from sdpanel.settings import redact

from ._registry import TabSpec, registered_tabs

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static"


class Monitor(Protocol):
    def sample(self) -> dict[str, Any]: ...


def _platform_dict() -> dict[str, Any]:
    try:
        from sdpanel.platforms import detect_platform

        return detect_platform().to_dict()
    except Exception as exc:  # noqa: BLE001 - the header must render even if detection fails
        return {"name": "unknown", "label": "unknown platform", "error": redact(str(exc))}


def _default_monitor(platform: dict[str, Any]) -> Monitor:
    from sdpanel.sysmon import SystemMonitor

    # Disk free is what matters for model downloads: measure the storage root's disk.
    return SystemMonitor(disk_path=platform.get("storage_root") or None)


def _check_built() -> None:
    if not (STATIC / "app.js").is_file():
        raise FileNotFoundError(
            f"sdpanel's front end is not built ({STATIC / 'app.js'} is missing): run "
            "`npm ci && npm run build` in the checkout, or install sdpanel from a wheel")


class _PanelBase(anywidget.AnyWidget):
    _esm = STATIC / "app.js"
    _css = STATIC / "app.css"

    platform = traitlets.Dict().tag(sync=True)
    system = traitlets.Dict().tag(sync=True)
    tabs = traitlets.List(traitlets.Dict()).tag(sync=True)
    active_tab = traitlets.Unicode("").tag(sync=True)
    in_sidebar = traitlets.Bool(False).tag(sync=True)


class Panel(_PanelBase):
    """The sdpanel app. ``Panel()`` with no arguments returns this process's shared panel
    (displaying it twice shows two views of one model); pass arguments for a fresh one.

    The class actually instantiated is a subclass carrying the traits of the registered
    tabs, built when the panel is created; a tab registered later appears in the next
    shared panel."""

    _shared: ClassVar[Panel | None] = None
    _classes: ClassVar[dict[tuple[str, ...], type[Panel]]] = {}
    _class_lock: ClassVar[threading.Lock] = threading.Lock()
    _tab_ids: ClassVar[tuple[str, ...]] = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> Panel:
        specs = registered_tabs()
        ids = tuple(s.id for s in specs)
        shared = Panel._shared
        if not args and not kwargs and shared is not None and shared.comm is not None \
                and type(shared)._tab_ids == ids:
            return shared
        with Panel._class_lock:
            sub = Panel._classes.get(ids)
            if sub is None:
                traits: dict[str, Any] = {"_tab_ids": ids}
                for spec in specs:
                    traits.update({name: _copy_trait(t) for name, t in spec.traits.items()})
                sub = type("Panel", (Panel,), {**traits, "__module__": __name__})
                Panel._classes[ids] = sub
        inst: Panel = super().__new__(sub)
        return inst

    def __init__(self, *, monitor: Monitor | None = None, sample_interval: float = 1.0,
                 **kwargs: Any) -> None:
        if getattr(self, "_sdp_ready", False):  # the shared panel, returned again by __new__
            return
        _check_built()
        shared = not kwargs and monitor is None and sample_interval == 1.0
        specs = [s for s in registered_tabs() if s.id in type(self)._tab_ids]
        kwargs.setdefault("platform", _platform_dict())
        kwargs.setdefault("tabs", [{"id": s.id, "label": s.label} for s in specs])
        super().__init__(**kwargs)
        self._sdp_ready = True
        self._specs: dict[str, TabSpec] = {s.id: s for s in specs}
        self._actions = {name: fn for s in specs for name, fn in s.actions.items()}
        self._detach: list[Callable[[], None]] = []
        self._monitor = monitor or _default_monitor(self.platform)
        self._interval = sample_interval
        # System samples change every second; the publisher batches them (≤ 1 Hz here).
        self._publisher = Publisher(self, max_rate=1.0 / self._interval)
        self._feed: Handle[None] | None = get_runtime().submit(
            self._system_feed(), name="panel-system-feed", topic="panel")
        self.on_msg(self._on_msg)
        for spec in specs:
            if spec.attach is not None:
                try:
                    detach = spec.attach(self)
                except Exception as exc:  # noqa: BLE001 - one broken tab must not kill the panel
                    log.warning("Tab %s failed to start: %s", spec.id, redact(str(exc)))
                    continue
                if detach is not None:
                    self._detach.append(detach)
        if shared:
            Panel._shared = self

    # ---- system monitor ----------------------------------------------------------------

    async def _system_feed(self) -> None:
        while True:
            try:
                sample = await asyncio.to_thread(self._monitor.sample)
                self._publisher.update(system=sample)
            except Exception as exc:  # noqa: BLE001 - keep sampling; show why in the trait
                self._publisher.update(system={"error": redact(str(exc))})
            await asyncio.sleep(self._interval)

    # ---- user intents --------------------------------------------------------------------

    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict) or "action" not in content:
            return
        action = str(content["action"])
        handler = self._actions.get(action)
        if handler is None:
            self.toast(f"Unknown action {action!r}: no tab handles it.", level="error")
            return
        try:
            handler(self, {k: v for k, v in content.items() if k != "action"})
        except Exception as exc:  # noqa: BLE001 - the user sees why, the kernel keeps going
            self.toast(redact(str(exc)), level="error")

    def toast(self, message: str, level: str = "info") -> None:
        """A one-off cue shown in every open view (dropped if no view is open)."""
        self.send({"cue": "toast", "level": level, "message": redact(message)})

    # ---- public --------------------------------------------------------------------------

    def show_in_sidebar(self) -> None:
        """Show a live view of this panel in JupyterLab's left "SD" sidebar (needs the
        sdpanel JupyterLab extension; Colab and classic Notebook have no sidebar)."""
        self.in_sidebar = True

    def close(self) -> None:
        if self._feed is not None:
            self._feed.cancel()
            self._feed = None
        self._publisher.close()
        for detach in self._detach:
            try:
                detach()
            except Exception as exc:  # noqa: BLE001
                log.warning("Tab detach failed: %s", redact(str(exc)))
        self._detach.clear()
        if Panel._shared is self:
            Panel._shared = None
        super().close()


def _copy_trait(trait: traitlets.TraitType[Any, Any]) -> traitlets.TraitType[Any, Any]:
    """Each Panel class gets its own trait objects (a TraitType binds to one class)."""
    import copy

    return copy.deepcopy(trait)
