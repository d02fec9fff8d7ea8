"""papermill runs notebook/SDPanel.ipynb with ``-p LAUNCH True``: cell 4 starts the (stub)
WebUI already installed in the WebUIs folder, waits until it answers and prints its links;
the WebUI outlives the kernel (it runs detached) and answers after papermill ends."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from sdpanel.runtime import EventBus
from sdpanel.storage import StorageRoot
from sdpanel.webuis import WebUIService, free_port
from tests.fixtures.range_server import RangeServer
from tests.fixtures.webui_packages import build_tree, make_zip

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts" / "notebook"


@pytest.mark.slow
def test_launch_parameter_starts_the_webui_headless(tmp_path: Path) -> None:
    store, webuis = tmp_path / "store", tmp_path / "webuis"
    svc = WebUIService(StorageRoot.at(store), EventBus(), webuis_dir=webuis)
    pkg = make_zip(build_tree(tmp_path / "tree"), tmp_path / "ComfyUI.zip")
    with RangeServer() as srv:
        srv.add_file(pkg.name, pkg)
        asyncio.run(svc.install("comfyui", source=srv.url(pkg.name), extensions=False))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / "launch.ipynb"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDPANEL_")}
    # The stub WebUI runs on this interpreter, named as a user names an existing Python.
    env.update(SDPANEL_STORAGE=str(store), SDPANEL_PLATFORM="local", SDPANEL_WEBUIS_DIR=str(webuis),
               SDPANEL_WEBUI_PYTHON=sys.executable, STUB_WEBUI_DELAY="0.3", SDPANEL_WEBUI_PORT=str(free_port()), PIP_NO_INDEX="1", http_proxy="http://127.0.0.1:9",
               https_proxy="http://127.0.0.1:9")
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "notebook" / "SDPanel.ipynb"), str(out),
           "--cwd", str(ROOT / "notebook"), "--kernel", "python3", "-p", "LAUNCH", "True"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        nb = json.loads(out.read_text(encoding="utf-8"))
        cell = next(c for c in nb["cells"] if c["id"] == "cell-launch")
        text = "".join("".join(o.get("text", "")) for o in cell["outputs"])
        assert "Launch: starting ComfyUI and waiting until it answers" in text
        assert re.search(r"comfyui: ready \(pid \d+, port \d+\)", text), text
        local = re.search(r"local:\s+(http://127\.0\.0\.1:\d+)", text)
        assert local, text
        # Detached: still answering after the kernel is gone.
        with urllib.request.urlopen(f"{local.group(1)}/system_stats", timeout=10) as r:
            assert r.status == 200
    finally:
        asyncio.run(svc.stop("comfyui"))
