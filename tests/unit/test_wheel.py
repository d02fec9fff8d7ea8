"""The wheel carries the built front end, the labextension, the server-extension config
and the data tables (what `pip install sdpanel` gives a user)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_contains_the_built_files(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path)]
    if importlib.util.find_spec("hatchling") and importlib.util.find_spec("hatch_jupyter_builder"):
        cmd.append("--no-isolation")  # offline: use the installed build backend
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    wheels = list(tmp_path.glob("sdpanel-*.whl"))
    assert len(wheels) == 1
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    data = next(n.split("/")[0] for n in names if n.endswith(".data/data/etc/jupyter/"
                                                             "jupyter_server_config.d/sdpanel.json"))
    shared = f"{data}/data/share/jupyter/labextensions/sdpanel"
    expected = {
        "sdpanel/static/app.js",
        "sdpanel/configs/kinds.json",
        "sdpanel/server/__init__.py",
        "sdpanel/cli/__init__.py",
        f"{shared}/package.json",
        f"{data}/data/etc/jupyter/jupyter_server_config.d/sdpanel.json",
    }
    assert expected <= names, expected - names
    assert any(n.startswith(f"{shared}/static/remoteEntry.") and n.endswith(".js") for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheels[0]).read(entry_points).decode()
    assert "sdpanel = sdpanel.cli:main" in text
