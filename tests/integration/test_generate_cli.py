"""``sdpanel generate`` as a user runs it: a real subprocess against the stub WebUIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sdpanel.generate import read_text
from sdpanel.generate._png import encode_png, gradient_png, image_info
from tests.fixtures.stub_a1111 import StubA1111
from tests.fixtures.stub_comfyui import StubComfyUI

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "model.safetensors").write_bytes(b"x")
    return root


def cli(*args: str, store: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SDPANEL_STORAGE": str(store), "SDPANEL_PLATFORM": "local", **extra_env}
    return subprocess.run([sys.executable, "-m", "sdpanel", "generate", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["comfyui", "a1111"])
def test_each_mode_from_the_cli(flavour: str, store: Path, tmp_path: Path) -> None:
    stub = (StubComfyUI() if flavour == "comfyui" else StubA1111()).start()
    try:
        init = tmp_path / "in.png"
        init.write_bytes(gradient_png(96, 64))
        mask = tmp_path / "mask.png"
        mask.write_bytes(encode_png(96, 64, [bytes(255 if x > 40 else 0 for x in range(96))] * 64, 1))
        runs = {"txt2img": ["--width", "128", "--height", "64", "--seed", "5"],
                "img2img": ["--init-image", str(init), "--denoise", "0.3"],
                "inpaint": ["--init-image", str(init), "--mask", str(mask), "--mask-blur", "2"]}
        for mode, extra in runs.items():
            out = tmp_path / f"out-{mode}"
            r = cli("a lighthouse", "--steps", "3", "--backend-url", stub.url, "--flavour", flavour,
                    "--out", str(out), "--json", *extra, store=store)
            assert r.returncode == 0, r.stderr
            result = json.loads(r.stdout)
            png = Path(result["images"][0])
            assert png.parent == out and png.is_file()
            size = image_info(png.read_bytes())
            assert (size.width, size.height) == ((128, 64) if mode == "txt2img" else (96, 64))
            params = read_text(png.read_bytes())["parameters"]
            assert params.startswith("a lighthouse\n") and f"Seed: {result['seed']}," in params
            assert (store / "outputs").rglob(png.name)
    finally:
        stub.stop()


def test_cli_progress_and_plain_output(store: Path) -> None:
    with StubComfyUI(step_delay=0.01) as stub:
        r = cli("fox", "--steps", "4", "--backend-url", stub.url, store=store)
    assert r.returncode == 0, r.stderr
    assert "running on comfyui@" in r.stderr and "step 4/4" in r.stderr
    assert r.stdout.strip().endswith(")") and "(seed " in r.stdout


def test_cli_names_each_bad_option(store: Path) -> None:
    r = cli("x", "--steps", "0", "--width", "100", "--checkpoint", "nope.safetensors",
            "--backend-url", "http://127.0.0.1:9", store=store)
    assert r.returncode == 2
    for option in ("--steps:", "--width:", "--checkpoint:"):
        assert option in r.stderr
    assert "multiple of 8" in r.stderr and "model.safetensors" in r.stderr


def test_cli_without_a_webui_says_what_to_do(store: Path) -> None:
    # The built-in engine pointed at a Python that is not there: nothing can run the job.
    r = cli("x", store=store, SDPANEL_ENGINE_PYTHON="/nonexistent/python")
    assert r.returncode == 1 and "No WebUI is running" in r.stderr and "Traceback" not in r.stderr
    assert "engine_python '/nonexistent/python' is not an executable file" in r.stderr
    assert "pip install 'sdpanel[engine]'" in r.stderr
