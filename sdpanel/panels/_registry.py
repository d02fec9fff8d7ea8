"""The tab registry: a feature adds its tab to the Panel by registering it here.

A tab is a small bundle: an id and label, the traits its front end reads
(``js/src/widget/tabs/<id>.ts``), the user intents ("actions") it handles, and an
``attach`` hook that starts whatever feeds its traits. The Panel shows only registered
tabs, so a feature that does not exist yet has no tab at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from traitlets import TraitType

if TYPE_CHECKING:
    from ._app import Panel

Action = Callable[["Panel", dict[str, Any]], None]
Attach = Callable[["Panel"], "Callable[[], None] | None"]


@dataclass(frozen=True)
class TabSpec:
    id: str
    label: str
    traits: Mapping[str, TraitType[Any, Any]] = field(default_factory=dict)
    actions: Mapping[str, Action] = field(default_factory=dict)
    attach: Attach | None = None
    order: int = 100


_lock = threading.Lock()
_tabs: dict[str, TabSpec] = {}


def register_tab(
    id: str,
    label: str,
    *,
    traits: Mapping[str, TraitType[Any, Any]] | None = None,
    actions: Mapping[str, Action] | None = None,
    attach: Attach | None = None,
    order: int = 100,
) -> TabSpec:
    """Register (or replace) a tab. Its traits are synced to the browser; keep them small
    (papermill stores every synced trait in the output notebook). Action names are
    global, so prefix them with the tab id (``"downloads.cancel"``)."""
    if not id or not id.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"Tab id {id!r} must be letters, digits, '-' or '_' (it names js/src/widget/tabs/<id>.ts)")
    traits = dict(traits or {})
    for name, trait in traits.items():
        # A tab trait the browser never sees is useless: sync them all.
        trait.tag(sync=True)
        if name.startswith("_"):
            raise ValueError(f"Tab trait {name!r} of tab {id!r} must not start with '_'")
    for action in actions or {}:
        owner = next((t.id for t in _tabs.values() if action in t.actions and t.id != id), None)
        if owner:
            raise ValueError(f"Action {action!r} of tab {id!r} is already handled by tab {owner!r}")
    spec = TabSpec(id=id, label=label, traits=traits, actions=dict(actions or {}),
                   attach=attach, order=order)
    with _lock:
        _tabs[id] = spec
    return spec


def unregister_tab(id: str) -> None:
    with _lock:
        _tabs.pop(id, None)


def registered_tabs() -> list[TabSpec]:
    """Registered tabs in display order (``order``, then registration order)."""
    with _lock:
        specs = list(_tabs.values())
    return sorted(specs, key=lambda s: s.order)
