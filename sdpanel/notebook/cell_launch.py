"""Cell 4, Launch: the WebUI picked in Settings — the Panel's Launch tab (interactive) or
install → start → wait for ready → links (headless). Nothing starts unless LAUNCH is on."""

from __future__ import annotations

from nbformat import NotebookNode

from ._generator import code_cell

ORDER = 4

# The trailing ";" keeps IPython from echoing the return value under the printed summary.
SOURCE = """#@title 4. Launch: install and start the WebUI, then open its links
# Starts only when LAUNCH is ticked in the Settings cell (an install downloads gigabytes).
# Interactive: returns at once; install / start / stop and the links are on the Panel's Launch tab.
# Headless: installs if needed, waits until the WebUI answers, prints its links and, with
# KEEP_ALIVE, keeps running while the WebUI does.
# GENERATE (a prompt): images made here, on the WebUI, or with LAUNCH off on sdpanel's
# built-in engine (no WebUI needed; pip install 'sdpanel[engine]').
import sdpanel.cells

sdpanel.cells.launch();"""


def build() -> NotebookNode:
    return code_cell("cell-launch", SOURCE)
