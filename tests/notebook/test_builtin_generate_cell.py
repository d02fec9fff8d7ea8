"""A fresh notebook with no WebUI installed makes an image headless: papermill with
``GENERATE`` set and LAUNCH off; the Launch cell runs the prompt on the built-in engine
(its worker process: real diffusers on CPU, random-weight SD1.5 in the store)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers", reason="the built-in engine needs sdpanel[engine]")

from PIL import Image  # noqa: E402

from sdpanel.generate import read_text  # noqa: E402
from tests.fixtures.sd15_checkpoint import place, sd15_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts" / "notebook"


@pytest.mark.slow
def test_generate_field_makes_an_image_with_no_webui(tmp_path: Path, planted_tokens: dict[str, str]) -> None:
    store = tmp_path / "store"
    place(sd15_checkpoint(), store / "checkpoints" / "sd15-random.safetensors")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / "generate-builtin.ipynb"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDPANEL_")}
    env.update(SDPANEL_STORAGE=str(store), SDPANEL_PLATFORM="local", PIP_NO_INDEX="1",
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "notebook" / "SDPanel.ipynb"), str(out),
           "--cwd", str(ROOT / "notebook"), "--kernel", "python3",
           "-p", "GENERATE", "a lighthouse at dusk", "-p", "GENERATE_OPTIONS", "width=64 height=64 steps=2 seed=5"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    nb = json.loads(out.read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if c["id"] == "cell-launch")
    text = "".join("".join(o.get("text", "")) for o in cell["outputs"])
    assert "Launch: off" in text and "Generate: done, seed 5, 1 image(s):" in text, text
    path = Path(re.search(r"^  (\S+\.png)  \(seed 5\)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert path.is_relative_to(store / "outputs")
    assert Image.open(io.BytesIO(path.read_bytes())).size == (64, 64)
    assert "Seed: 5," in read_text(path.read_bytes())["parameters"]
