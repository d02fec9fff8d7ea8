"""The jupyter-server extension: sdpanel's REST API under ``<base_url>sdpanel/api/``.

Enabled by ``etc/jupyter/jupyter_server_config.d/sdpanel.json`` (installed with the wheel)
or explicitly by ``sdpanel lab``. Every route sits behind Jupyter's own authentication.
"""

from __future__ import annotations

from typing import Any

from ._handlers import (
    API_PREFIX,
    FEATURE_ROUTE_MODULES,
    ROUTES,
    SdpanelHandler,
    StatusHandler,
    add_route,
    load_feature_routes,
)

__all__ = [
    "API_PREFIX",
    "FEATURE_ROUTE_MODULES",
    "ROUTES",
    "SdpanelHandler",
    "StatusHandler",
    "add_route",
    "load_feature_routes",
]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "sdpanel.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from jupyter_server.utils import url_path_join

    load_feature_routes(serverapp.log)
    web_app = serverapp.web_app
    base_url = web_app.settings["base_url"]
    handlers = [(url_path_join(base_url, API_PREFIX, pattern), cls) for pattern, cls in ROUTES]
    web_app.add_handlers(".*$", handlers)
    serverapp.log.info("sdpanel: API at %s", url_path_join(base_url, API_PREFIX))


# The classic notebook-server name, kept so older loaders find us too.
load_jupyter_server_extension = _load_jupyter_server_extension
