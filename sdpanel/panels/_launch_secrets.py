"""Tunnel passwords for the Launch tab, shown once. A password never enters a trait (saved
notebooks keep traits): it goes to the open views as a custom message and stays in memory
only until a view says it showed it."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

__all__ = ["TunnelSecrets"]


class TunnelSecrets:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], dict[str, str]] = {}

    def add(self, webui: str, tool: str, user: str, password: str) -> None:
        with self._lock:
            self._pending[(webui, tool)] = {"webui": webui, "tool": tool, "user": user,
                                            "password": password}

    def seen(self, webui: str, tool: str) -> None:
        with self._lock:
            self._pending.pop((webui, tool), None)

    def forget(self, webui: str) -> None:
        """The WebUI stopped: its tunnels and their passwords are gone."""
        with self._lock:
            self._pending = {k: v for k, v in self._pending.items() if k[0] != webui}

    def send(self, panel: Any) -> None:
        """Send every pending password to the panel's open views."""
        with self._lock:
            pending = list(self._pending.values())
        for secret in pending:
            # No comm (a closed panel): it stays pending until a view says hello.
            with contextlib.suppress(Exception):
                panel.send({"type": "launch-secret", **secret})
