"""Overhead of the job queue + REST + SSE over calling the WebUI backend directly, and SSE
fan-out, against the stub ComfyUI.

    python -m tests.benchmarks.bench_generate [--runs 30] [--clients 50]

In one run:

- direct: ``ComfyUIBackend.run`` against the stub (upload-free txt2img, 4 steps, 64x64);
- through sdpanel (alternating with the direct runs): ``POST /sdpanel/api/jobs`` to a real jupyter-server (subprocess, token
  auth) whose queue drives the same stub, then the job's SSE stream until ``done``;
  the PNG is saved with its parameters chunk as usual;
- fan-out: one longer job, ``--clients`` SSE streams opened on it at once; each must get
  every event (same ids, in order, ending with ``done``).

Prints p50 / p90 of both paths and the added latency (target: p50 < 20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from sdpanel.generate import ComfyUIBackend, Job, JobRequest
from tests.fixtures.stub_comfyui import StubComfyUI

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "bench-generate-token"
JOB = {"prompt": "bench", "checkpoint": "model.safetensors", "steps": 4, "width": 64, "height": 64}


class _Quiet:
    def progress(self, step: int, steps: int) -> None:
        pass

    def preview(self, image: bytes, mime: str) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def direct_once(backend: ComfyUIBackend, seed: int) -> float:
    req = JobRequest(**{k: v for k, v in JOB.items()})  # type: ignore[arg-type]
    t = time.perf_counter()
    await backend.run(Job(req, seed=seed), _Quiet())
    return time.perf_counter() - t


async def read_sse(s: aiohttp.ClientSession, url: str) -> list[tuple[int, str]]:
    events: list[tuple[int, str]] = []
    current: dict[str, str] = {}
    async with s.get(url, timeout=aiohttp.ClientTimeout(total=120)) as r:
        r.raise_for_status()
        async for raw in r.content:
            line = raw.decode().rstrip("\n")
            if not line:
                if "event" in current:
                    events.append((int(current["id"]), current["event"]))
                current = {}
                continue
            if not line.startswith(":") and ": " in line:
                key, value = line.split(": ", 1)
                current[key] = value
    return events


async def api_once(s: aiohttp.ClientSession, base: str, seed: int) -> float:
    t = time.perf_counter()
    async with s.post(f"{base}/sdpanel/api/jobs", json={**JOB, "seed": seed}) as r:
        assert r.status == 201, await r.text()
        job = await r.json()
    events = await read_sse(s, f"{base}/sdpanel/api/jobs/{job['id']}/events")
    assert events[-1][1] == "done", events
    return time.perf_counter() - t


async def compare(stub_url: str, base: str, runs: int) -> tuple[list[float], list[float]]:
    """Alternate the two paths so a busy machine slows both alike; two warm-up rounds."""
    backend = ComfyUIBackend(stub_url)
    d, a = [], []
    async with aiohttp.ClientSession(headers={"Authorization": f"token {TOKEN}"}) as s:
        for i in range(runs + 2):
            td = await direct_once(backend, i)
            ta = await api_once(s, base, i)
            if i >= 2:
                d.append(td)
                a.append(ta)
    await backend.close()
    return d, a


async def fan_out(base: str, clients: int, stub: StubComfyUI) -> dict[str, Any]:
    stub.step_delay = 0.02
    async with aiohttp.ClientSession(headers={"Authorization": f"token {TOKEN}"},
                                     connector=aiohttp.TCPConnector(limit=0)) as s:
        async with s.post(f"{base}/sdpanel/api/jobs", json={**JOB, "steps": 40}) as r:
            job = await r.json()
        url = f"{base}/sdpanel/api/jobs/{job['id']}/events"
        t = time.perf_counter()
        streams = await asyncio.gather(*(read_sse(s, url) for _ in range(clients)))
        elapsed = time.perf_counter() - t
    stub.step_delay = 0.0
    # Previews are coalesced for replay, so compare the events every client must get.
    must = [[e for e in events if e[1] != "preview"] for events in streams]
    complete = sum(1 for m in must if m and m[-1][1] == "done" and m == must[0])
    progress = sum(1 for e in must[0] if e[1] == "progress")
    return {"clients": clients, "complete": complete, "events": len(must[0]),
            "progress_events": progress, "seconds": elapsed}


def start_server(port: int, store: Path, stub_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SDPANEL_STORAGE": str(store), "SDPANEL_PLATFORM": "local",
           "SDPANEL_GENERATE_BACKENDS": f"comfyui={stub_url}"}
    config = store.parent / "jupyter_server_config.json"
    config.write_text(json.dumps({"ServerApp": {"jpserver_extensions": {
        "sdpanel.server": True, "tests.server.test_jobs_api": True}}}))
    argv = [sys.executable, "-m", "jupyter_server", f"--port={port}", "--ip=127.0.0.1",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
            "--ServerApp.open_browser=False", "--allow-root", f"--config={config}",
            f"--ServerApp.root_dir={store}"]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def wait_up(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"token {TOKEN}"}) as s:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError("jupyter-server exited: " + (proc.stderr.read() or b"").decode()[-2000:])
            try:
                async with s.get(f"{base}/sdpanel/api/jobs") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("jupyter-server did not come up in 30 s")


async def main(runs: int, clients: int) -> None:
    with tempfile.TemporaryDirectory(prefix="generate-bench-") as tmp, StubComfyUI() as stub:
        store = Path(tmp) / "store"
        (store / "checkpoints").mkdir(parents=True)
        (store / "checkpoints" / "model.safetensors").write_bytes(b"x")
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(port, store, stub.url)
        try:
            await wait_up(base, proc)
            d, a = await compare(stub.url, base, runs)
            fan = await fan_out(base, clients, stub)
        finally:
            proc.terminate()
            proc.wait(10)
    p50d, p50a = statistics.median(d), statistics.median(a)
    print(f"txt2img 64x64, 4 steps, stub ComfyUI, {runs} runs each")
    print(f"  direct ComfyUIBackend.run : p50 {p50d * 1000:7.1f} ms   p90 {_pct(d, 0.9) * 1000:7.1f} ms")
    print(f"  queue + REST + SSE        : p50 {p50a * 1000:7.1f} ms   p90 {_pct(a, 0.9) * 1000:7.1f} ms")
    print(f"  added latency p50         : {(p50a - p50d) * 1000:7.1f} ms  (target < 20 ms)  "
          f"ratio {p50a / p50d:.2f}x")
    print(f"SSE fan-out: {fan['complete']}/{fan['clients']} clients got all {fan['events']} events "
          f"({fan['progress_events']} progress) of one 40-step job in {fan['seconds']:.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.clients))
