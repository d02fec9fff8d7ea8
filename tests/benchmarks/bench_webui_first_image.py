"""Install → first image with the real ComfyUI 0.3.64 on CPU: package zip vs git, cold and
warm, against what a user would otherwise type, timed in the same run.

    python -m tests.benchmarks.bench_webui_first_image [--cold] [--runs warm,cold]

Each variant starts from an empty folder and ends when the first 64x64, 1-step txt2img
image is on disk:

- ``sdpanel package``: ``sdpanel install comfyui --from <ComfyUI.zip URL>`` (range server),
  ``sdpanel launch comfyui --cpu --wait``, ``sdpanel generate``;
- ``sdpanel git``: the same from a local git repository (tag v0.3.64);
- ``by hand``: ``git clone``, ``python -m venv``, ``pip install torch… -r requirements.txt
  requests``, ``python main.py --cpu``, a prompt POSTed to ``/prompt``, wait for the file.

warm: the venv exists already (sdpanel: the ``webui_python`` setting names it; by hand:
the same venv reused) — what a second install costs. cold: the venv is built (torch from
the local wheel mirror, ~5.5 GB written), what a first install costs. Prints seconds per
phase and the ratios sdpanel / by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.fixtures.comfy_env import TEST_TORCH, comfyui_venv_python
from tests.fixtures.comfy_live import TAG, build_comfy_repo, build_comfy_zip, free_port, new_comfy
from tests.fixtures.range_server import RangeServer


def _sdpanel(base: Path, how: str, warm: bool) -> dict[str, float]:
    c = new_comfy(base, python=str(comfyui_venv_python()) if warm else None)
    times: dict[str, float] = {}
    t0 = time.monotonic()
    with RangeServer() as srv:
        srv.add_file("ComfyUI.zip", build_comfy_zip())
        source = srv.url("ComfyUI.zip") if how == "package" else f"file://{build_comfy_repo()}#{TAG}"
        c.cli("install", "comfyui", "--from", source, "--no-extensions", timeout=3600)
    times["install"] = time.monotonic() - t0
    t1 = time.monotonic()
    try:
        c.cli("launch", "comfyui", "--cpu", "--wait", "--port", "0", "--timeout", "1800")
        times["launch"] = time.monotonic() - t1
        t2 = time.monotonic()
        c.cli("generate", "a lighthouse", "--steps", "1", "--width", "64", "--height", "64", "--json")
        times["first image"] = time.monotonic() - t2
    finally:
        c.cli("stop", "comfyui", check=False)
    times["total"] = time.monotonic() - t0
    return times


def _by_hand(base: Path, warm: bool) -> dict[str, float]:
    """What the README of ComfyUI tells a user to do, step by step."""
    c = new_comfy(base, python=None)  # only for the model files in a store
    times: dict[str, float] = {}
    t0 = time.monotonic()
    wd = base / "ComfyUI"
    subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", TAG, f"file://{build_comfy_repo()}", str(wd)],
                   check=True)
    if warm:
        py = str(comfyui_venv_python())
    else:
        subprocess.run([sys.executable, "-m", "venv", str(wd / "venv")], check=True)
        py = str(wd / "venv" / "bin" / "python")
        subprocess.run([py, "-m", "pip", "install", "-q", *TEST_TORCH], check=True)
        reqs = [line for line in (wd / "requirements.txt").read_text().splitlines()
                if line.split("=")[0].split(">")[0].strip() not in ("torch", "torchvision", "torchaudio")]
        (wd / "reqs-no-torch.txt").write_text("\n".join(reqs))
        subprocess.run([py, "-m", "pip", "install", "-q", "-r", str(wd / "reqs-no-torch.txt"), "requests"], check=True)
    from sdpanel.storage import StorageRoot

    for f in StorageRoot.at(c.store).kind_dir("checkpoints").iterdir():
        os.link(f, wd / "models" / "checkpoints" / f.name)
    times["install"] = time.monotonic() - t0
    port = free_port()
    t1 = time.monotonic()
    log = open(base / "comfy.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([py, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port)], cwd=wd,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                urllib.request.urlopen(f"{url}/system_stats", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError((base / "comfy.log").read_text()[-2000:]) from None
                time.sleep(0.5)
        times["launch"] = time.monotonic() - t1
        t2 = time.monotonic()
        from sdpanel.generate._graph import build_graph
        from sdpanel.generate._jobs import JobRequest

        graph = build_graph(JobRequest(prompt="a lighthouse", checkpoint="sd15-random.safetensors", steps=1,
                                       width=64, height=64), 1)
        graph["save"] = {"class_type": "SaveImage", "inputs": {"images": graph["save"]["inputs"]["images"],
                                                              "filename_prefix": "byhand"}}
        req = urllib.request.Request(f"{url}/prompt", data=json.dumps({"prompt": graph}).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=30).read()
        while not list((wd / "output").glob("byhand_*.png")):
            time.sleep(0.2)
        times["first image"] = time.monotonic() - t2
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(60)
        log.close()
    times["total"] = time.monotonic() - t0
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="warm", help="warm, cold or warm,cold")
    ap.add_argument("--only", default="package,git,hand", help="which variants")
    args = ap.parse_args()
    rows: list[tuple[str, dict[str, float]]] = []
    for mode in args.runs.split(","):
        warm = mode == "warm"
        for variant in args.only.split(","):
            base = Path(tempfile.mkdtemp(prefix=f"bench-first-image-{mode}-{variant}-"))
            try:
                t = _by_hand(base, warm) if variant == "hand" else _sdpanel(base, variant, warm)
            finally:
                shutil.rmtree(base, ignore_errors=True)
            rows.append((f"{mode:<5} {'by hand' if variant == 'hand' else 'sdpanel ' + variant}", t))
            print(f"{rows[-1][0]:<22} " + "  ".join(f"{k} {v:6.1f}s" for k, v in t.items()), flush=True)
    hand = {name.split()[0]: t["total"] for name, t in rows if "by hand" in name}
    for name, t in rows:
        mode = name.split()[0]
        if "by hand" not in name and mode in hand:
            print(f"{name:<22} total / by hand: {t['total'] / hand[mode]:.2f}x")


if __name__ == "__main__":
    main()
