"""How cells 2-5 show the Panel: the first one run shows it; later ones open their tab on
that same Panel and say so in one line, instead of a fourth copy of the whole Panel.

``Panel()`` is one shared widget per kernel, so every copy was the same live view (a tab
chosen in one switched them all) and the notebook grew a full Panel per cell.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["show_panel_tab"]

TAB_LABELS = {"downloads": "Downloads", "launch": "Launch", "storage": "Storage",
              "generate": "Generate", "settings": "Settings", "models": "Models"}


def show_panel_tab(panel: Any, tab: str | None, what: str = "") -> None:
    """Display ``panel`` opened on ``tab`` (None: as it is) — or, if a cell of this kernel
    already shows it, open the tab there and print a pointer to it. ``what``: this cell's
    news for the pointer ("3 files queued")."""
    from IPython.display import HTML, display

    if tab:
        panel.active_tab = tab
    if not getattr(panel, "_sdp_shown_in_cell", False) or panel.comm is None:
        panel._sdp_shown_in_cell = True
        display(panel)
        return
    label = TAB_LABELS.get(tab or "", "")
    where = f"its {label} tab is open now" if label else "the Panel above"
    news = f"{what}. " if what else ""
    display(HTML(
        '<div class="sdpanel-pointer" style="padding:6px 10px;border-left:3px solid '
        'var(--jp-brand-color1,#7c6cff);font-family:var(--jp-ui-font-family,sans-serif);'
        f'font-size:13px">↑ {html.escape(news)}See the sdpanel Panel above: {html.escape(where)}.</div>'))
