"""Plain CommonJS ``.js`` files inside the checkout run under node as they are meant to.

JupyterLab runs its own helpers (``jupyterlab/node-version-check.js`` in the checkout's
``.venv/``) with node on every page load; a ``"type": "module"`` in the checkout's
package.json made node treat them as ES modules, and the server log showed "require is
not defined in ES module scope" each time. Our build script is ``.mjs``, so it needs no
such flag.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_root_package_json_leaves_js_files_commonjs() -> None:
    assert json.loads((REPO / "package.json").read_text()).get("type", "commonjs") == "commonjs"


def test_a_commonjs_helper_under_the_checkout_runs(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    # Where a venv's JupyterLab keeps its helper: inside the checkout (git-ignored).
    folder = REPO / "tests" / "artifacts" / "venv-like" / "jupyterlab"
    folder.mkdir(parents=True, exist_ok=True)
    helper = folder / "node-version-check.js"
    helper.write_text("const path = require('path');\nconsole.log('ok ' + path.basename(__filename));\n")
    done = subprocess.run([node, str(helper)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok node-version-check.js"
    assert "require is not defined" not in done.stderr
