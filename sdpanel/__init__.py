"""sdpanel — Stable Diffusion from a notebook.

Public API is re-exported here; the modules behind it are private (leading underscore)
or grouped in sub-packages by service.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sdpanel")
except PackageNotFoundError:  # running from a checkout without install
    __version__ = "0.0.0+source"

from sdpanel.runtime import get_runtime

__all__ = ["__version__", "get_runtime"]
