"""Pushes runtime-owned state into a widget at most ``max_rate`` times a second.

Services change state often (every chunk of a download); widgets must not see every
change. Writers call :meth:`Publisher.update` from any thread; a timer coalesces the
pending values and applies them in one ``hold_sync()`` batch so the browser gets one
message per flush.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol


class SyncTarget(Protocol):
    def hold_sync(self) -> Any: ...


class Publisher:
    def __init__(self, widget: SyncTarget, max_rate: float = 10.0) -> None:
        self.widget = widget
        self.min_interval = 1.0 / max_rate
        self._pending: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._last_flush = 0.0
        self._timer: threading.Timer | None = None
        self.flushes = 0  # how many batches reached the widget (tests and benchmarks read it)

    def update(self, **values: Any) -> None:
        """Record new values for traits; they reach the widget within ``min_interval``."""
        with self._lock:
            self._pending.update(values)
            if self._timer is not None:
                return
            delay = max(0.0, self._last_flush + self.min_interval - time.monotonic())
            self._timer = threading.Timer(delay, self.flush)
            self._timer.daemon = True
            self._timer.start()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._timer = None
            self._last_flush = time.monotonic()
        if not pending:
            return
        with self.widget.hold_sync():
            for name, value in pending.items():
                setattr(self.widget, name, value)
        self.flushes += 1

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self.flush()
