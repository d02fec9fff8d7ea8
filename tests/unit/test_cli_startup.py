"""``sdpanel --help`` / ``--version`` / ``<verb> --help`` load only the CLI: the services
behind the verbs (HTTP client, Jupyter, widgets, the store's database) are imported by the
verb that runs, so a shell user never waits for them. Asserted on the module set of a
fresh interpreter, not on a timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Heavy for a start-up (tens to hundreds of ms each) and needed by no --help.
HEAVY = {"aiohttp", "jupyter_server", "nbformat", "ipywidgets", "traitlets", "anywidget",
         "ipykernel", "tornado", "psutil", "sqlite3", "importlib.metadata",
         "sdpanel.downloads", "sdpanel.sources", "sdpanel.storage", "sdpanel.webuis",
         "sdpanel.settings", "sdpanel.platforms", "sdpanel.status"}

_PROBE = """
import contextlib, io, json, sys
from sdpanel.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def _run(*argv: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["download", "--help"]])
def test_help_and_version_import_no_heavy_module(argv: list[str]) -> None:
    res = _run(*argv)
    assert res["code"] == 0
    loaded = set(res["modules"])  # type: ignore[arg-type]
    if argv == ["--version"]:
        loaded.discard("importlib.metadata")  # where the installed version is read
    assert not (loaded & HEAVY), f"sdpanel {' '.join(argv)} imported {sorted(loaded & HEAVY)}"


def test_version_and_help_still_say_what_they_did() -> None:
    assert str(_run("--version")["out"]).startswith("sdpanel ")
    text = str(_run("--help")["out"])
    assert "download" in text and "status" in text and "launch" in text


def test_lazy_choices_still_list_and_check_values() -> None:
    """Choices loaded on demand still appear in a verb's help and still reject typos."""
    text = str(_run("launch", "--help")["out"])
    assert "comfyui" in text and "forge" in text
    text = str(_run("clean", "--help")["out"])
    assert "loras" in text and "checkpoints" in text
    done = subprocess.run([sys.executable, "-m", "sdpanel", "clean", "--kind", "lora"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "invalid choice: 'lora'" in done.stderr and "loras" in done.stderr
