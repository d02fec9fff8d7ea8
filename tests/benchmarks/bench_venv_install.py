"""Prebuilt package + venv archive install, sdpanel's way vs the seed's (sdAIgen's) way.

    python -m tests.benchmarks.bench_venv_install [--venv-size 1G] [--package-size 128M]
        [--rate 100M] [--keep DIR]

Builds a stub ComfyUI package zip (``--package-size`` of filler) and a real venv archive
(``python -m venv`` plus ``--venv-size`` of filler, half compressible, half random, packed
``tar c venv | lz4``, one top ``venv/``), lays both out as the Hugging Face repo
``NagisaNao/ANXETY`` serves them, and serves them from the range server in its own process
at ``--rate`` bytes/s per connection. Measured in the same run:

- download alone: both files at once (aiohttp to files), the floor of any install;
- the seed's way: download both (at once, the kindest case for it), then ``unzip`` the
  package and ``lz4 -d | tar x`` the venv;
- sdpanel: ``WebUIService.install("comfyui")`` through ``HF_ENDPOINT`` (package and venv
  each streamed into place while downloading, both at once; venv relocated and linked);
- sdpanel re-install (``--force``): the package again, the intact shared venv not fetched.

Prints seconds and ratios to the download alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from sdpanel.runtime import EventBus
from sdpanel.storage import StorageRoot
from sdpanel.webuis import WebUIService, webui_info
from tests.benchmarks.bench_install import _download, _size
from tests.fixtures.range_server import RangeServerProcess
from tests.fixtures.webui_packages import build_tree, make_venv_archive, make_zip

REPO_PATH = "NagisaNao/ANXETY/resolve/main"


async def _both(urls: list[str], dest: Path) -> float:
    t = time.monotonic()
    await asyncio.gather(*(_download(u, dest / u.rsplit("/", 1)[1]) for u in urls))
    return time.monotonic() - t


def _seed_unpack(scratch: Path, package: str, venv: str) -> float:
    t = time.monotonic()
    subprocess.run(["unzip", "-q", "-o", package, "-d", "home"], cwd=scratch, check=True)
    subprocess.run(f"lz4 -d -c {venv} | tar -x -C home", shell=True, cwd=scratch, check=True)
    return time.monotonic() - t


async def _sdpanel(work: Path, *, replace: bool) -> float:
    svc = WebUIService(StorageRoot.at(work / "store"), EventBus(), webuis_dir=work / "webuis")
    t = time.monotonic()
    await svc.install("comfyui", replace=replace, extensions=False)
    return time.monotonic() - t


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--venv-size", default="1G")
    ap.add_argument("--package-size", default="128M")
    ap.add_argument("--rate", default="100M", help="server throttle, bytes/s per connection")
    ap.add_argument("--keep", help="work in this folder and keep it")
    args = ap.parse_args()
    rate = _size(args.rate)
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-venv-"))
    served = work / "served" / REPO_PATH
    served.mkdir(parents=True, exist_ok=True)
    info = webui_info("comfyui")
    pkg, venv = served / info.prebuilt["package"], served / info.prebuilt["venv"]
    t = time.monotonic()
    if not pkg.exists():
        make_zip(build_tree(work / "tree", filler=_size(args.package_size)), pkg, top="ComfyUI")
    if not venv.exists():
        make_venv_archive(venv, work / "builder", filler=_size(args.venv_size))
    print(f"package {pkg.stat().st_size / 2**20:.0f} MiB (zip), venv archive {venv.stat().st_size / 2**20:.0f} MiB "
          f"(tar.lz4, {_size(args.venv_size) / 2**30:.2f} GiB of filler unpacked); built in "
          f"{time.monotonic() - t:.0f}s; server {rate / 1e6:.0f} MB/s per connection")
    srv = RangeServerProcess(work / "served", rate=rate).start()
    os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{srv.port}/files"
    urls = [f"{os.environ['HF_ENDPOINT']}/{REPO_PATH}/{p.name}" for p in (pkg, venv)]
    rows: list[tuple[str, float]] = []
    try:
        scratch = work / "seed"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        dl = await _both(urls, scratch)
        unpack = _seed_unpack(scratch, pkg.name, venv.name)
        shutil.rmtree(scratch)
        for d in ("store", "webuis"):
            shutil.rmtree(work / d, ignore_errors=True)
        ours = await _sdpanel(work, replace=False)
        again = await _sdpanel(work, replace=True)
        scratch.mkdir()
        dl2 = await _both(urls, scratch)  # again, to bracket noise
        shutil.rmtree(scratch)
        floor = min(dl, dl2)
        rows += [("download alone (both at once)", floor), ("seed: download, then unzip + lz4 -d | tar x", dl + unpack),
                 ("sdpanel install (streamed, both at once)", ours), ("sdpanel re-install (venv kept, not fetched)", again)]
    finally:
        srv.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'':46} {'seconds':>8} {'× download':>11}")
    for label, secs in rows:
        print(f"{label:46} {secs:8.2f} {secs / floor:10.2f}×")
    print(f"seed's way / sdpanel: {(dl + unpack) / ours:.2f}×")


if __name__ == "__main__":
    asyncio.run(main())
