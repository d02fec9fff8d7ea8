"""What the tabs' controllers share.

- :class:`BusController`: a controller fed by bus events (Downloads, Generate, Launch):
  the panel, the runtime, a Publisher for the tab's traits, and one bus subscription that
  :meth:`~BusController.detach` ends.
- :class:`PanelSlot`: where a tab keeps its controller on each panel. ``slot.attach`` is
  the registry's attach hook (make, store, start; returns the stop function) and
  ``slot.get`` finds the controller for the tab's actions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from sdpanel.runtime import Event

    from ._app import Panel

__all__ = ["BusController", "PanelSlot"]


class BusController:
    """Event callbacks run on the publishing thread (the runtime loop); subclasses write
    :meth:`_on_event`, call :meth:`subscribe` from their ``attach`` and push traits
    through ``self.publisher``."""

    def __init__(self, panel: Any, publisher: Any) -> None:
        from sdpanel.runtime import get_runtime

        self.panel = panel
        self.rt = get_runtime()
        self.publisher = publisher
        self._unsubscribe: Callable[[], None] | None = None

    def subscribe(self, topics: set[str]) -> None:
        self._unsubscribe = self.rt.bus.subscribe(self._on_event, topics=topics)

    def _on_event(self, event: Event) -> None:  # pragma: no cover - every subclass has one
        raise NotImplementedError

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.publisher.close()


class _Controller(Protocol):
    def attach(self) -> None: ...

    def detach(self) -> None: ...


C = TypeVar("C", bound=_Controller)


class PanelSlot(Generic[C]):
    def __init__(self, attr: str, label: str, make: Callable[[Panel], C]) -> None:
        self.attr = attr  # the panel attribute holding the controller (tests read it)
        self.label = label
        self.make = make

    def attach(self, panel: Panel) -> Callable[[], None]:
        ctl = self.make(panel)
        setattr(panel, self.attr, ctl)
        ctl.attach()
        return ctl.detach

    def get(self, panel: Panel) -> C:
        ctl: C | None = getattr(panel, self.attr, None)
        if ctl is None:
            raise RuntimeError(f"The {self.label} tab is not attached to this panel")
        return ctl
