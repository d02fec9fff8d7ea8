"""Five cells to a ready link, on local servers: first run and re-run.

    python -m tests.benchmarks.bench_e2e [--big-mib 256] [--platform runpod]

The run is the README's: ``papermill notebook/SDPanel.ipynb`` with a WebUI (stub package
from the local range server), two CivitAI models, one Hugging Face file, one preset and one
large direct link (so the downloads take measurable time). Printed per run: wall time from
papermill's start to its end (kernel start to the link printed), each cell's time, the bytes
downloaded, and the overhead ratio = run time / time the downloads alone take, where
"downloads alone" is the same URLs fetched by ``aria2c -x16 -s16`` on the command line
(the tool a user would otherwise use) in the same session. Also written as JSON to
tests/artifacts/bench_e2e.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.e2e._harness import (
    ROOT,
    fake_platform,
    five_cell_params,
    http_get,
    kernel_env,
    local_servers,
    run_notebook,
    stop_started,
)

OUT = ROOT / "tests" / "artifacts" / "bench_e2e.json"


def big_file(path: Path, size: int) -> Path:
    """A valid .safetensors file (the queue checks the header) of ``size`` bytes."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    block = bytes(range(256)) * 4096
    with path.open("wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        left = size
        while left > 0:
            f.write(block[:left])
            left -= len(block)
    return path


def cell_times(nb: dict[str, Any]) -> dict[str, float]:
    return {c.get("id", "?"): round(float(c["metadata"].get("papermill", {}).get("duration") or 0.0), 2)
            for c in nb.get("cells", []) if c.get("cell_type") == "code"}


def aria2c_alone(urls: list[str], dest: Path) -> float:
    """The same files fetched by aria2c alone (16 connections, no verification)."""
    dest.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    procs = [subprocess.Popen(["aria2c", "-q", "-x16", "-s16", "-k1M", "--allow-overwrite=true",
                               "--file-allocation=none", "-d", str(dest), "-o", f"f{i}", url])
             for i, url in enumerate(urls)]
    for url, p in zip(urls, procs, strict=True):
        if p.wait() != 0:
            raise RuntimeError(f"aria2c failed on {url}")
    return time.perf_counter() - started


def papermill_floor(tmp: Path) -> float:
    """papermill on a one-cell notebook: the kernel start and teardown every run pays."""
    import sys

    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("1")]
    src = tmp / "floor.ipynb"
    nbformat.write(nb, str(src))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "papermill", str(src), str(tmp / "floor-out.ipynb"), "--kernel", "python3"],
                   check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big-mib", type=int, default=256)
    ap.add_argument("--platform", default="runpod")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sdpanel-bench-e2e-"))
    try:
        with local_servers(tmp) as srv:
            srv.packages.add_file("big_model.safetensors", big_file(tmp / "big_model.safetensors",
                                                                   args.big_mib * 1024 * 1024))
            host = fake_platform(args.platform, tmp / "host")
            env = kernel_env(host, srv, tmp)
            links = [*srv.links(), srv.packages.url("big_model.safetensors")]
            params = five_cell_params(srv, MODEL_LINKS=",".join(links))
            rows: list[dict[str, Any]] = []
            try:
                for label in ("first run", "re-run"):
                    run = run_notebook(f"bench-e2e-{label.replace(' ', '-')}.ipynb", env, params, timeout=600)
                    if run.rc != 0 or not run.link():
                        raise SystemExit(f"{label} failed:\n{run.stderr[-3000:]}")
                    assert http_get(run.link() or "")[0] == 200
                    store_bytes = sum(p.stat().st_size for p in host.storage.rglob("*")
                                      if p.is_file() and ".sdpanel" not in p.parts)
                    rows.append({"run": label, "seconds": round(run.seconds, 2), "cells": cell_times(run.nb),
                                 "store_bytes": store_bytes})
            finally:
                stop_started(host.storage)
            served = srv.packages.requests(path_contains="big_model")
            big_bytes = sum(r["bytes_sent"] or 0 for r in served)
            byte_urls = [f"{srv.civitai.base_url}/api/download/models/{v}" for v in (2001, 3002)] + links[2:]
            from sdpanel.sources import get_preset
            from tests.e2e._harness import PRESET
            byte_urls.append(srv.hf.endpoint + get_preset(PRESET)["url"].split("huggingface.co", 1)[1])
            alone = min(aria2c_alone(byte_urls, tmp / f"alone{i}") for i in range(2))
            floor = min(papermill_floor(tmp) for _ in range(2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = rows[0]["store_bytes"]
    print(f"five cells to a ready link on local servers ({args.platform} profile, "
          f"{size / 2**20:.1f} MiB of models incl. one {args.big_mib} MiB file)")
    print(f"download alone (aria2c -x16, same URLs): {alone:.2f} s; "
          f"papermill + kernel start on a one-cell notebook: {floor:.2f} s")
    for row in rows:
        dl = row["cells"].get("cell-download", 0.0)
        cells = sum(row["cells"].values())
        row["overhead_ratio"] = round(row["seconds"] / alone, 2) if alone else None
        row["download_cell_ratio"] = round(dl / alone, 2) if alone else None
        print(f"  {row['run']:<9} {row['seconds']:6.2f} s to the link = {row['overhead_ratio']}x the download alone "
              f"({row['seconds'] - floor:.2f} s above papermill's floor; cells {cells:.2f} s: "
              + ", ".join(f"{k.removeprefix('cell-')} {v:.2f}" for k, v in row["cells"].items() if k.startswith("cell-"))
              + f"); download cell = {row['download_cell_ratio']}x aria2c alone")
    ratio = rows[1]["seconds"] / rows[0]["seconds"]
    print(f"  re-run / first run: {ratio:.2f}; big file bytes served over both runs: {big_bytes} "
          f"({big_bytes / (args.big_mib * 2**20):.2f}x its size)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"rows": rows, "download_alone_s": round(alone, 2), "papermill_floor_s": round(floor, 2),
                               "rerun_ratio": round(ratio, 3),
                               "big_file_bytes_served": big_bytes, "big_mib": args.big_mib}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
