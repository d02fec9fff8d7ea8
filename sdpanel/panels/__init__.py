"""Front ends in the notebook: the ``Panel`` anywidget app and its tab registry.

Feature packages add their tab with :func:`register_tab` and a front end in
``js/src/widget/tabs/<id>.ts``; importing this package registers the built-in tabs.
"""

from . import _downloads_tab as _downloads_tab  # registers the Downloads tab
from . import _generate_tab as _generate_tab  # registers the Generate tab
from . import _launch_tab as _launch_tab  # registers the Launch tab
from . import _models_tab as _models_tab  # registers the Models tab
from . import _settings_tab as _settings_tab  # registers the Settings tab
from . import _storage_tab as _storage_tab  # registers the Storage tab
from ._app import Panel
from ._registry import TabSpec, register_tab, registered_tabs, unregister_tab
from ._settings_tab import panel_values, resolved_settings

__all__ = [
    "Panel",
    "TabSpec",
    "panel_values",
    "register_tab",
    "registered_tabs",
    "resolved_settings",
    "unregister_tab",
]
