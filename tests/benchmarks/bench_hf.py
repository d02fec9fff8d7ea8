"""Hugging Face downloads: sdpanel's engines beside ``huggingface_hub`` (the tool a user
would otherwise use), against the Xet-like test bridge (``/resolve/`` → 302 → signed URL,
paced per connection).

Tools, alternated round by round, each on a fresh store / cache:
- ``hf_hub_download`` with ``HF_HUB_DISABLE_XET=1``: the plain-HTTP path (one stream), what
  users fall back to when hf_xet stalls;
- ``hf_hub_download`` with Xet on (hf_xet): reported as "cannot run here" with the reason
  when it fails — hf_xet talks the Xet CAS protocol (token route, reconstruction API, xorb
  chunks), which the local bridge does not serve;
- sdpanel's Python engine and aria2 engine through the queue (resolve, 16 connections,
  SHA-256 verified against X-Linked-Etag).
Prints median times and ratios against ``hf_hub_download`` (its time / tool time: above 1
is faster) and writes tests/artifacts/bench_hf.json.

    python -m tests.benchmarks.bench_hf --size 128M --rate 20M --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.benchmarks.bench_downloads import parse_size  # noqa: E402
from tests.fixtures.hf_server import HFServer  # noqa: E402
from tests.fixtures.payloads import fake_safetensors  # noqa: E402
from tests.fixtures.xet_bridge import XetBridge  # noqa: E402

REPO_ID, PATH = "sdpanel-test/tiny-sd15", "bench.safetensors"


def hub_download(hf: HFServer, xet: bool) -> tuple[float | None, str]:
    home = tempfile.mkdtemp(prefix="bench-hf-hub-")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN",)}
    env.update({"HF_ENDPOINT": hf.endpoint, "HF_HOME": home, "HF_HUB_DISABLE_XET": "0" if xet else "1",
                "HF_XET_HIGH_PERFORMANCE": "1"})
    code = ("from huggingface_hub import hf_hub_download;"
            f"hf_hub_download({REPO_ID!r}, {PATH!r}, local_dir={home!r})")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    took = time.monotonic() - t0
    shutil.rmtree(home, ignore_errors=True)
    if r.returncode != 0:
        last = [ln for ln in r.stderr.strip().splitlines() if ln.strip()][-3:]
        return None, " | ".join(last)[:400]
    return took, ""


def sdpanel_download(hf: HFServer, engine: str) -> tuple[float | None, str]:
    from sdpanel.downloads import DownloadQueue
    from sdpanel.runtime import EventBus
    from sdpanel.sources import ResolveContext, resolve_link

    store = Path(tempfile.mkdtemp(prefix=f"bench-hf-{engine}-"))

    async def run() -> tuple[float | None, str]:
        t0 = time.monotonic()
        ctx = ResolveContext(hf_endpoint=hf.endpoint, probe_links=False)
        try:
            spec = await resolve_link(f"{hf.endpoint}/{REPO_ID}/resolve/main/{PATH}", ctx)
        finally:
            await ctx.aclose()
        q = DownloadQueue(store, EventBus(), engine=engine, connections=16, tokens={})
        try:
            [iid] = await q.add(spec)
            await q.wait_all(timeout=900)
            item = q.item(iid)
        finally:
            await q.close(stop_idle_daemon=True)
        took = time.monotonic() - t0
        return (took, "") if item["state"] == "done" else (None, str(item.get("error")))

    try:
        return asyncio.run(run())
    finally:
        shutil.rmtree(store, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="128M")
    ap.add_argument("--rate", default="20M", help="bytes/s per connection")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    size, rate = parse_size(args.size), parse_size(args.rate, 1000)
    tools = {"hf_hub_download": lambda hf: hub_download(hf, xet=False),
             "hf_xet": lambda hf: hub_download(hf, xet=True),
             "python": lambda hf: sdpanel_download(hf, "python")}
    if shutil.which("aria2c"):
        tools["aria2-engine"] = lambda hf: sdpanel_download(hf, "aria2")
    times: dict[str, list[float]] = {t: [] for t in tools}
    notes: dict[str, str] = {}
    data = fake_safetensors("bench-hf", size)
    for _round in range(args.repeat):
        for name, fn in tools.items():
            if name in notes:
                continue
            with HFServer(xet=XetBridge(rate=rate)) as hf:
                hf.add_file(REPO_ID, PATH, data)
                took, why = fn(hf)
            if took is None:
                notes[name] = why
            else:
                times[name].append(took)
    base = statistics.median(times["hf_hub_download"]) if times["hf_hub_download"] else None
    report: dict[str, Any] = {"size": size, "rate_per_connection": rate, "repeat": args.repeat, "tools": {}}
    print(f"{size / 2**20:.0f} MiB, {rate / 1e6:.0f} MB/s per connection, {args.repeat} rounds")
    for name in tools:
        if name in notes:
            print(f"  {name:<16} cannot run here: {notes[name]}")
            report["tools"][name] = {"error": notes[name]}
            continue
        med = statistics.median(times[name])
        ratio = base / med if base else None
        print(f"  {name:<16} {med:6.2f} s" + (f"   {ratio:.2f}x hf_hub_download" if ratio else ""))
        report["tools"][name] = {"median_s": round(med, 3), "times": [round(t, 3) for t in times[name]],
                                 "ratio_vs_hf_hub_download": round(ratio, 2) if ratio else None}
    out = REPO / "tests" / "artifacts" / "bench_hf.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
