"""Cell 3, Download: the models picked in cell 2 (or the Panel's Models tab) into the store —
the Panel's Downloads tab (interactive) or a blocking per-file summary (headless)."""

from __future__ import annotations

from nbformat import NotebookNode

from ._generator import code_cell

ORDER = 3

# The trailing ";" keeps IPython from echoing the return value under the printed summary.
SOURCE = """#@title 3. Download: the models picked in Settings, verified, into the store
# Interactive: returns at once; watch, pause or retry files on the Panel's Downloads tab.
# Headless: waits for every file and prints name, size, state and sha256 (or the reason).
import sdpanel.cells

sdpanel.cells.download();"""


def build() -> NotebookNode:
    return code_cell("cell-download", SOURCE)
