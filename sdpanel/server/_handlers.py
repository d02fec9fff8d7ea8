"""Handlers of the sdpanel REST API and the route table that mounts them.

A feature adds routes by subclassing :class:`SdpanelHandler` in its own module, listing
``ROUTES = [(pattern, handler), ...]`` there and naming the module in
:data:`FEATURE_ROUTE_MODULES`; the extension imports those modules when the server loads
it (not at import time, so ``import sdpanel.server`` stays light).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler

from sdpanel.status import gather_status

API_PREFIX = "sdpanel/api"

# (pattern relative to <base_url>sdpanel/api/, handler class)
ROUTES: list[tuple[str, type[tornado.web.RequestHandler]]] = []

# Modules with a ``ROUTES`` list of their own, mounted next to ours.
FEATURE_ROUTE_MODULES: tuple[str, ...] = ("sdpanel.generate._api",)


def add_route(pattern: str, handler: type[tornado.web.RequestHandler]) -> None:
    """Mount ``handler`` at ``<base_url>sdpanel/api/<pattern>`` (regex, no leading slash)."""
    if (pattern, handler) not in ROUTES:
        ROUTES.append((pattern, handler))


def load_feature_routes(log: logging.Logger | None = None) -> list[str]:
    """Add every feature module's routes to :data:`ROUTES`; returns the problems. A
    feature that fails to import is logged and skipped: status must keep working."""
    from sdpanel.settings import redact

    problems: list[str] = []
    for name in FEATURE_ROUTE_MODULES:
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            problems.append(redact(f"{name}: {type(exc).__name__}: {exc}"))
            continue
        for pattern, handler in getattr(module, "ROUTES", []):
            add_route(pattern, handler)
    for problem in problems:
        (log or logging.getLogger("sdpanel.server")).warning(
            "sdpanel: API routes not mounted: %s", problem)
    return problems


class SdpanelHandler(APIHandler):
    """Base for our API: Jupyter's authorizer sees every call as resource ``sdpanel``.

    APIHandler already enforces XSRF on non-GET methods and answers errors as JSON.
    """

    auth_resource = "sdpanel"

    def write_json(self, data: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data))


class StatusHandler(SdpanelHandler):
    """``GET /sdpanel/api/status``: platform, system sample, storage, processes, version."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        # gather_status blocks (psutil sampling, NVML, disk): keep the server loop free.
        status = await asyncio.to_thread(gather_status)
        self.write_json(status)


add_route("status", StatusHandler)
