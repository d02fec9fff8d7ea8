"""The built-in engine against ComfyUI on the same job: SD1.5 (the random-weight test
checkpoint: same shapes, so the same compute as a real one), txt2img, one image.

    python -m tests.benchmarks.bench_builtin_engine [--size 512] [--steps 20]

In one run, alternating nothing (each engine starts cold, once):

- built-in: sdpanel's worker process (diffusers) started by ``BuiltinBackend``;
- ComfyUI 0.3.64 (the real one, from the test cache's venv, ``--cpu`` without a GPU,
  latent2rgb previews like ours) driven by sdpanel's ComfyUI backend, which is what a
  user gets from the same queue with a WebUI.

For each: time to the first image from a cold process (start + model load + sampling +
decode), sampling speed in it/s (from the per-step progress events, first step excluded:
it carries warm-up), and the process's memory peak (VmHWM). Prints the built-in / ComfyUI
ratios. On a machine with a GPU both run on it (ComfyUI without ``--cpu``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from sdpanel.generate import BuiltinBackend, ComfyUIBackend, Job, JobRequest
from sdpanel.storage import StorageRoot
from tests.fixtures.comfy_env import comfyui_source, comfyui_venv_python
from tests.fixtures.sd15_checkpoint import place, sd15_checkpoint

CKPT = "sd15-random.safetensors"


@dataclass
class Timings:
    step_times: list[float] = field(default_factory=list)

    def progress(self, step: int, steps: int) -> None:
        self.step_times.append(time.monotonic())

    def preview(self, image: bytes, mime: str) -> None:
        pass

    def its(self) -> float:
        t = self.step_times
        return (len(t) - 2) / (t[-1] - t[1]) if len(t) > 2 else float("nan")


def vm_hwm(pid: int) -> int:
    """Peak resident memory of a live process, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def gpu() -> bool:
    return subprocess.run(["nvidia-smi"], capture_output=True).returncode == 0 if os.path.exists(
        "/usr/bin/nvidia-smi") else False


def request(size: int, steps: int) -> JobRequest:
    return JobRequest(prompt="a lighthouse on a cliff at dusk", checkpoint=CKPT, steps=steps,
                      width=size, height=size, seed=1, sampler="euler", scheduler="normal")


async def builtin(store: StorageRoot, size: int, steps: int) -> dict[str, float]:
    timings = Timings()
    t0 = time.monotonic()
    backend = BuiltinBackend(store)
    try:
        images = await backend.run(Job(request(size, steps), 1), timings)
        first = time.monotonic() - t0
        peak = vm_hwm(backend.pid or 0)
    finally:
        await backend.close()
    assert images, "no image"
    return {"first_image_s": first, "its": timings.its(), "peak_gib": peak / 1024**3}


async def comfyui(store: StorageRoot, size: int, steps: int, port: int) -> dict[str, float]:
    base = store.path / "comfy-base"
    place(store.kind_dir("checkpoints") / CKPT, base / "models" / "checkpoints" / CKPT)
    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)  # ComfyUI lists it at start
    argv = [str(comfyui_venv_python()), "main.py", "--listen", "127.0.0.1", "--port", str(port),
            "--base-directory", str(base), "--preview-method", "latent2rgb", "--disable-auto-launch"]
    if not gpu():
        argv.append("--cpu")
    timings = Timings()
    t0 = time.monotonic()
    log = (Path(tempfile.gettempdir()) / "bench-builtin-comfyui.log").open("wb")
    proc = subprocess.Popen(argv, cwd=comfyui_source(), stdout=log, stderr=subprocess.STDOUT)
    backend = ComfyUIBackend(f"http://127.0.0.1:{port}")
    try:
        async with aiohttp.ClientSession() as s:
            while True:  # the time to answer is part of the time to the first image
                if proc.poll() is not None:
                    raise RuntimeError(f"ComfyUI exited: see {log.name}")
                try:
                    async with s.get(f"{backend.url}/system_stats") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        images = await backend.run(Job(request(size, steps), 1), timings)
        first = time.monotonic() - t0
        peak = vm_hwm(proc.pid)
    finally:
        await backend.close()
        proc.terminate()
        proc.wait(30)
        log.close()
    assert images, "no image"
    return {"first_image_s": first, "its": timings.its(), "peak_gib": peak / 1024**3}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        store = StorageRoot.at(Path(tmp) / "store").ensure()
        place(sd15_checkpoint(), store.kind_dir("checkpoints") / CKPT)
        ours = asyncio.run(builtin(store, args.size, args.steps))
        print(f"built-in: {ours}", flush=True)
        theirs = asyncio.run(comfyui(store, args.size, args.steps, port))
    device = "GPU" if gpu() else f"CPU ({os.cpu_count()} cores, shared)"
    print(f"SD1.5 txt2img {args.size}x{args.size}, {args.steps} steps, euler, {device}")
    print(f"{'':12}{'first image (cold)':>20}{'it/s':>10}{'peak RSS':>12}")
    for name, r in (("built-in", ours), ("ComfyUI", theirs)):
        print(f"{name:12}{r['first_image_s']:>18.1f} s{r['its']:>10.3f}{r['peak_gib']:>9.2f} GiB")
    print(f"ratios built-in/ComfyUI: first image {ours['first_image_s'] / theirs['first_image_s']:.2f}x "
          f"(lower is better), it/s {ours['its'] / theirs['its']:.2f}x (higher is better), "
          f"peak RSS {ours['peak_gib'] / theirs['peak_gib']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
