"""papermill runs notebook/SDPanel.ipynb headless against this checkout, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts" / "notebook"
MAX_BYTES = 1024 * 1024


def _papermill(tmp_path: Path, name: str, *params: str) -> dict:
    """Run the papermill CLI the way the README says, kernel cwd in notebook/ as when a
    user opens it there. The output goes to tests/artifacts/ so the session's token guard
    scans it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / name
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDPANEL_")}
    env.update(SDPANEL_STORAGE=str(tmp_path / "store"), SDPANEL_PLATFORM="local",
               # no network: a pip or HTTP call would fail fast instead of hanging
               PIP_NO_INDEX="1", http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "notebook" / "SDPanel.ipynb"), str(out),
           "--cwd", str(ROOT / "notebook"), "--kernel", "python3", *params]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.stat().st_size < MAX_BYTES
    return json.loads(out.read_text(encoding="utf-8"))


def _text(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append("".join(output.get("text", "")))
        parts.append("".join(output.get("data", {}).get("text/plain", "")))
    return "".join(parts)


@pytest.mark.slow
def test_defaults_run_headless_offline(tmp_path: Path, planted_tokens: dict[str, str]) -> None:
    nb = _papermill(tmp_path, "defaults.ipynb")
    cells = {c["id"]: c for c in nb["cells"]}
    setup, settings = _text(cells["cell-setup"]), _text(cells["cell-settings"])
    assert "sdpanel " in setup and "platform  local" in setup
    assert str((tmp_path / "store").resolve()) in setup
    assert (tmp_path / "store" / ".sdpanel").is_dir()
    assert "sdpanel settings:" in settings and "comfyui" in settings
    # The planted tokens are in the environment: reported as set, never shown.
    assert "CIVITAI_TOKEN" in settings and "set (environment)" in settings
    raw = json.dumps(nb)
    for value in planted_tokens.values():
        assert value not in raw
    assert not any(o.get("output_type") == "error" for c in nb["cells"] for o in c["outputs"])


@pytest.mark.slow
def test_injected_parameters_are_applied(tmp_path: Path) -> None:
    nb = _papermill(tmp_path, "forge.ipynb", "-p", "WEBUI", "forge", "-p", "NSFW", "True")
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1
    text = _text(injected[0])
    assert "parameters injected: NSFW, WEBUI" in text
    lines = {ln.split()[0]: ln.split()[1] for ln in text.splitlines()
             if ln.startswith("  ") and len(ln.split()) >= 2}
    assert lines["webui"] == "forge" and lines["nsfw"] == "True"
