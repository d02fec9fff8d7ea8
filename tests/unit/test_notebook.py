"""The generated notebook: in sync with the generator, form cells, parameters cell,
a standard-library-only Setup cell."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import nbformat
import pytest

from sdpanel.cells import param_fields
from sdpanel.notebook import (
    build_notebook,
    check_notebook,
    default_notebook_path,
    discover_builders,
    notebook_text,
)
from sdpanel.notebook.cell_setup import SOURCE as SETUP_SOURCE
from sdpanel.settings import SECRET_NAMES, Settings

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "notebook" / "SDPanel.ipynb"


def _cells() -> list[Any]:
    return nbformat.read(COMMITTED, as_version=4).cells


def test_committed_notebook_matches_the_generator() -> None:
    assert default_notebook_path() == COMMITTED
    assert check_notebook() is None, "run `sdpanel notebook` and commit the result"


def test_generation_is_deterministic() -> None:
    assert notebook_text() == notebook_text()
    assert "execution_count" in notebook_text()  # code cells, never executed: no outputs
    nb = json.loads(notebook_text())
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in nb["cells"])


def test_every_cell_is_a_form_with_a_stable_id() -> None:
    cells = _cells()
    assert 2 <= len(cells) <= 5
    assert len(cells) == len(discover_builders())
    assert [c["id"] for c in cells[:2]] == ["cell-setup", "cell-settings"]
    for cell in cells:
        assert cell["cell_type"] == "code"
        assert cell["source"].startswith("#@title "), cell["id"]
        assert cell["id"].startswith("cell-")
    nbformat.validate(nbformat.read(COMMITTED, as_version=4))


def test_settings_cell_is_the_parameters_cell_with_every_user_setting() -> None:
    cells = _cells()
    tagged = [c["id"] for c in cells if "parameters" in c["metadata"].get("tags", [])]
    assert tagged == ["cell-settings"]
    source = cells[1]["source"]
    assigned = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            assigned[node.targets[0].id] = ast.literal_eval(node.value)  # type: ignore[attr-defined]
    defaults = Settings()
    for field in param_fields():
        name = field.name.upper()
        assert name in assigned, name
        line = next(ln for ln in source.splitlines() if ln.startswith(f"{name} = "))
        assert "#@param" in line
        value = getattr(defaults, field.name)
        expected = ", ".join(value) if isinstance(value, list) else value
        assert assigned[name] == expected
        if field.metadata.get("choices"):
            assert json.dumps(field.metadata["choices"]) in line
    hidden = [f.name.upper() for f in dataclasses.fields(Settings) if not f.metadata.get("param")]
    assert not set(hidden) & set(assigned)
    for secret in SECRET_NAMES:  # tokens are fields, always empty in the committed file
        assert assigned[secret] == ""
    assert "sdpanel.cells.settings(globals())" in source


def _imported_modules(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_setup_cell_uses_only_the_standard_library() -> None:
    source = _cells()[0]["source"]
    assert source == SETUP_SOURCE.rstrip("\n")
    modules = _imported_modules(source) - {"sdpanel"}
    assert modules, "the parser found no imports at all"
    assert modules <= set(sys.stdlib_module_names), modules - set(sys.stdlib_module_names)
    assert "sdpanel.cells.setup()" in source


def _setup_functions(fake_importlib: Any = None) -> dict[str, Any]:
    """The Setup cell's helper functions, without running the cell's top level."""
    tree = ast.parse(SETUP_SOURCE)
    keep = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef))]
    keep += [n for n in tree.body if isinstance(n, ast.Assign)]
    namespace: dict[str, Any] = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "<setup-cell>", "exec"), namespace)
    if fake_importlib is not None:
        namespace["importlib"] = fake_importlib
    return namespace


def test_setup_cell_finds_the_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ns = _setup_functions()
    monkeypatch.chdir(ROOT / "notebook")
    assert ns["_sdpanel_checkout"]() == ROOT
    monkeypatch.chdir(tmp_path)
    assert ns["_sdpanel_checkout"]() is None


def test_setup_cell_puts_a_folder_on_the_paths(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    ns = _setup_functions()
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    ns["_add_path"](tmp_path)
    ns["_add_path"](tmp_path)  # idempotent
    assert sys.path[0] == str(tmp_path) and sys.path.count(str(tmp_path)) == 1
    assert os.environ["PYTHONPATH"] == f"{tmp_path}{os.pathsep}/elsewhere"


def test_setup_cell_names_the_fix_when_no_source_works(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path, capsys) -> None:
    """No sdpanel importable, no checkout, a package URL and a git URL that fail (local
    paths: no network): one clear error naming the ways out."""
    import importlib

    fake = types.SimpleNamespace(
        util=types.SimpleNamespace(find_spec=lambda name: None),
        import_module=importlib.import_module,
        invalidate_caches=importlib.invalidate_caches,
    )
    ns = _setup_functions(fake)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SDPANEL_PACKAGE_URL", str(tmp_path / "missing.whl"))
    monkeypatch.setenv("SDPANEL_GIT_URL", str(tmp_path / "missing-repo"))
    with pytest.raises(RuntimeError, match="SDPANEL_PACKAGE_URL"):
        ns["_get_sdpanel"]()
    assert "pip install failed" in capsys.readouterr().out


def test_builders_can_be_passed_in_order() -> None:
    from sdpanel.notebook import code_cell

    nb = build_notebook([lambda: code_cell("cell-a", "#@title A\nx = 1"),
                         lambda: code_cell("cell-b", "#@title B\ny = 2")])
    assert [c["id"] for c in nb.cells] == ["cell-a", "cell-b"]
    with pytest.raises(ValueError, match="#@title"):
        code_cell("cell-c", "x = 1")
    with pytest.raises(RuntimeError, match="duplicate"):
        build_notebook([lambda: code_cell("cell-a", "#@title A"),
                        lambda: code_cell("cell-a", "#@title A")])
