"""The background runtime: one asyncio loop on a daemon thread, and the event bus."""

from ._events import ErrorEvent, Event, EventBus, LogEvent, ProgressEvent, StateEvent, Subscriber
from ._publisher import Publisher
from ._runtime import Handle, Runtime, get_runtime

__all__ = [
    "ErrorEvent",
    "Event",
    "EventBus",
    "Handle",
    "LogEvent",
    "ProgressEvent",
    "Publisher",
    "Runtime",
    "StateEvent",
    "Subscriber",
    "get_runtime",
]
