"""Cell 5, Storage: the Panel's Storage tab, or (headless) a usage report and the clean
that the Settings cell's CLEAN_* parameters ask for."""

from __future__ import annotations

from nbformat import NotebookNode

from ._generator import code_cell

ORDER = 5

# The trailing ";" keeps IPython from echoing the return value under the printed summary.
SOURCE = """#@title 5. Storage: usage, duplicates, cleaner
# What to clean headless: CLEAN_LEFTOVERS / CLEAN_CACHES in the Settings cell.
import sdpanel.cells

sdpanel.cells.storage();"""


def build() -> NotebookNode:
    return code_cell("cell-storage", SOURCE)
