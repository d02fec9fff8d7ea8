"""sdpanel — Stable Diffusion from a notebook.

Public API is re-exported here; the modules behind it are private (leading underscore)
or grouped in sub-packages by service.
"""

from __future__ import annotations

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


def _version() -> str:
    # importlib.metadata pulls in zipfile, email, ssl ...: only when someone asks (--version).
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sdpanel")
    except PackageNotFoundError:  # running from a checkout without install
        return "0.0.0+source"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value = _version()
        globals()["__version__"] = value
        return value
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
