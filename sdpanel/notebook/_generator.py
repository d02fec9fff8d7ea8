"""Build, write and check ``SDPanel.ipynb`` (nbformat v4)."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Sequence
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_notebook

CellBuilder = Callable[[], NotebookNode]

NOTEBOOK_NAME = "SDPanel.ipynb"

_METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
    # Colab opens the notebook on a GPU runtime and shows each cell as a form.
    "accelerator": "GPU",
    "colab": {"provenance": [], "gpuType": "T4"},
}


def code_cell(cell_id: str, source: str, tags: Sequence[str] = ()) -> NotebookNode:
    """A code cell with a fixed id and Colab's form view (``#@title`` on line 1)."""
    if not source.startswith("#@title "):
        raise ValueError(f"cell {cell_id!r} must start with '#@title ': notebook cells are forms")
    # Colab shows forms (cellView); JupyterLab hides the code and its collapsed-input
    # placeholder shows the first line, the #@title: the notebook opens on five titles,
    # not 88 lines of Setup code (a click on the title shows the code).
    metadata: dict[str, object] = {"cellView": "form", "jupyter": {"source_hidden": True}}
    if tags:
        metadata["tags"] = list(tags)
    cell = new_code_cell(source=source.rstrip("\n"), metadata=metadata)
    cell["id"] = cell_id
    return cell


def discover_builders() -> list[CellBuilder]:
    """Every ``cell_*`` module's ``build``, ordered by the module's ``ORDER``."""
    package = __name__.rsplit(".", 1)[0]
    modules = [
        importlib.import_module(f"{package}.{m.name}")
        for m in pkgutil.iter_modules(importlib.import_module(package).__path__)
        if m.name.startswith("cell_")
    ]
    orders = [int(m.ORDER) for m in modules]
    if len(set(orders)) != len(orders):
        raise RuntimeError(f"two notebook cells claim the same ORDER: {sorted(orders)}")
    return [m.build for m in sorted(modules, key=lambda m: int(m.ORDER))]


def build_notebook(builders: Sequence[CellBuilder] | None = None) -> NotebookNode:
    nb = new_notebook(metadata=dict(_METADATA))
    nb.cells = [build() for build in (builders or discover_builders())]
    ids = [c["id"] for c in nb.cells]
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"duplicate notebook cell ids: {ids}")
    nbformat.validate(nb)
    return nb


def notebook_text(builders: Sequence[CellBuilder] | None = None) -> str:
    return nbformat.writes(build_notebook(builders)) + "\n"


def default_notebook_path() -> Path:
    from sdpanel.platforms import checkout_dir

    root = checkout_dir()
    if root is None:
        raise FileNotFoundError(
            "sdpanel is installed without its source checkout, so there is no committed "
            "notebook: pass --output PATH to write one"
        )
    return root / "notebook" / NOTEBOOK_NAME


def write_notebook(path: Path | None = None) -> Path:
    path = path or default_notebook_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = notebook_text()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # atomic: a reader never sees half a notebook
    return path


def check_notebook(path: Path | None = None) -> str | None:
    """None when ``path`` equals what the generator produces, else a short description
    of the first differences (a unified diff, at most 40 lines)."""
    path = path or default_notebook_path()
    expected = notebook_text()
    if not path.is_file():
        return f"{path} does not exist; run `sdpanel notebook` to write it"
    actual = path.read_text(encoding="utf-8")
    if actual == expected:
        return None
    diff = difflib.unified_diff(
        actual.splitlines(), expected.splitlines(),
        fromfile=f"{path} (committed)", tofile="generated", lineterm="", n=1,
    )
    lines = list(diff)
    more = f"\n... {len(lines) - 40} more diff lines" if len(lines) > 40 else ""
    return "\n".join(lines[:40]) + more
