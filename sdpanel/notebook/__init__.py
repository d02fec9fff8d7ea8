"""The notebook generator: ``notebook/SDPanel.ipynb`` is built from cell builders.

Each cell lives in a module ``sdpanel/notebook/cell_<name>.py`` defining ``ORDER: int``
(its position) and ``build() -> nbformat.NotebookNode``. A feature adds its cell by adding
such a module; :func:`discover_builders` returns them ordered. Output is deterministic
(fixed cell ids, no timestamps) so ``sdpanel notebook --check`` is stable.
"""

from ._generator import (
    NOTEBOOK_NAME,
    CellBuilder,
    build_notebook,
    check_notebook,
    code_cell,
    default_notebook_path,
    discover_builders,
    notebook_text,
    write_notebook,
)

__all__ = [
    "NOTEBOOK_NAME",
    "CellBuilder",
    "build_notebook",
    "check_notebook",
    "code_cell",
    "default_notebook_path",
    "discover_builders",
    "notebook_text",
    "write_notebook",
]
