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

from typing import TYPE_CHECKING, Any

from sdpanel.runtime import get_runtime

if TYPE_CHECKING:
    from sdpanel.panels import Panel

# Heavy or widget-only parts load on first use, so `import sdpanel` stays cheap in the CLI
# and the server extension (no anywidget/ipykernel import there).
_LAZY = {
    "Panel": "sdpanel.panels",
    "agenerate": "sdpanel.generate",
}


def __getattr__(name: str) -> Any:
    if name == "generate":
        # The sub-package is itself callable: sdpanel.generate("a cat", checkpoint=...).
        import importlib

        return importlib.import_module("sdpanel.generate")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sdpanel' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["Panel", "__version__", "agenerate", "generate", "get_runtime"]
