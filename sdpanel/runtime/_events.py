"""Typed events that flow from services to every front end.

Services publish; panels, the CLI, the REST/SSE API and headless cells subscribe.
Events are small frozen dataclasses so they can cross threads safely.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

_ids = itertools.count(1)


@dataclass(frozen=True)
class Event:
    """Base of every event. ``topic`` names the service ("downloads", "webui:comfyui" ...);
    ``key`` names the thing inside it (a download id, a job id) when there is one."""

    topic: str
    key: str = ""
    ts: float = field(default_factory=time.time)
    seq: int = field(default_factory=lambda: next(_ids))

    @property
    def kind(self) -> str:
        return type(self).__name__.removesuffix("Event").lower()


@dataclass(frozen=True)
class ProgressEvent(Event):
    done: int = 0
    total: int | None = None
    speed: float = 0.0  # bytes (or units) per second
    message: str = ""


@dataclass(frozen=True)
class LogEvent(Event):
    level: Literal["debug", "info", "warning", "error"] = "info"
    message: str = ""


@dataclass(frozen=True)
class StateEvent(Event):
    state: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ErrorEvent(Event):
    message: str = ""
    error_type: str = ""


Subscriber = Callable[[Event], None]


class EventBus:
    """Thread-safe fan-out. Subscribers run on the publishing thread and must be quick
    (they usually just record the event); one failing subscriber never stops the others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[tuple[Subscriber, frozenset[str] | None]] = []

    def subscribe(self, callback: Subscriber, topics: set[str] | None = None) -> Callable[[], None]:
        """Call ``callback`` for every event (or only those whose topic is in ``topics``,
        matching a prefix before ":" too). Returns a function that unsubscribes."""
        entry = (callback, frozenset(topics) if topics else None)
        with self._lock:
            self._subs.append(entry)

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._subs:
                    self._subs.remove(entry)

        return unsubscribe

    def publish(self, event: Event) -> None:
        from sdpanel.settings import redact  # late: settings imports nothing from here

        if isinstance(event, LogEvent | ErrorEvent | ProgressEvent) and event.message:
            masked = redact(event.message)
            if masked != event.message:
                event = _replace(event, message=masked)
        with self._lock:
            subs = list(self._subs)
        for callback, topics in subs:
            if topics is not None and event.topic not in topics and event.topic.split(":")[0] not in topics:
                continue
            # A broken subscriber must not break publishing for the others.
            with contextlib.suppress(Exception):
                callback(event)


def _replace(event: Event, **changes: Any) -> Event:
    import dataclasses

    return dataclasses.replace(event, **changes)
