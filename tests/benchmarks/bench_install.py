"""Streamed WebUI package install vs download-then-unpack, from the throttled range server.

    python -m tests.benchmarks.bench_install [--size 300M|2G] [--rate 60M] [--keep DIR]

Builds a stub WebUI package of ``--size`` (half compressible "code", half random bytes,
like a packed venv), as .zip and .tar.zst, serves it from the range server in its own
process at ``--rate`` bytes/s, and measures in the same run:

- download alone (aiohttp to a file: the floor any install has to pay);
- sdpanel's streamed install (unpacks while downloading), zip and tar.zst;
- download, then ``unzip``; download, then ``zstd -d | tar x``.

Prints seconds and the ratios (target: streamed ≤ 1.15× the download alone).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

from sdpanel.webuis import install_package
from tests.fixtures.range_server import RangeServerProcess
from tests.fixtures.webui_packages import build_tree, make_tar, make_zip


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("B")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


async def _download(url: str, dest: Path) -> float:
    t = time.monotonic()
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        r.raise_for_status()
        with open(dest, "wb") as f:
            async for chunk in r.content.iter_chunked(1 << 20):
                f.write(chunk)
    return time.monotonic() - t


async def _streamed(url: str, target: Path) -> float:
    t = time.monotonic()
    await install_package(url, target, webui="bench")
    return time.monotonic() - t


def _run(cmd: str, cwd: Path) -> float:
    t = time.monotonic()
    subprocess.run(cmd, shell=True, cwd=cwd, check=True)
    return time.monotonic() - t


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="300M")
    ap.add_argument("--rate", default="60M", help="server throttle, bytes/s")
    ap.add_argument("--keep", help="work in this folder and keep it")
    args = ap.parse_args()
    size, rate = _size(args.size), _size(args.rate)
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-install-"))
    work.mkdir(parents=True, exist_ok=True)
    pkgs = work / "pkgs"
    pkgs.mkdir(exist_ok=True)
    t = time.monotonic()
    tree = build_tree(work / "tree", venv=True, filler=size)
    zpath, tpath = pkgs / "ComfyUI.zip", pkgs / "ComfyUI.tar.zst"
    if not zpath.exists():
        make_zip(tree, zpath)
    if not tpath.exists():
        make_tar(tree, tpath)
    print(f"package: {size / 1e6:.0f} MB unpacked; zip {zpath.stat().st_size / 1e6:.0f} MB, "
          f"tar.zst {tpath.stat().st_size / 1e6:.0f} MB (built in {time.monotonic() - t:.0f}s); "
          f"server rate {rate / 1e6:.0f} MB/s")
    srv = RangeServerProcess(pkgs, rate=rate).start()
    rows: list[tuple[str, float, float]] = []
    try:
        for fmt, pkg, unpack in (("zip", zpath, "unzip -q -o {f} -d out"),
                                 ("tar.zst", tpath, "mkdir -p out && zstd -d -q -c {f} | tar -x -C out")):
            url = srv.url(pkg.name)
            scratch = work / f"run-{fmt}"
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            dl = await _download(url, scratch / pkg.name)
            then = _run(unpack.format(f=pkg.name), scratch)
            shutil.rmtree(scratch)
            scratch.mkdir()
            streamed = await _streamed(url, scratch / "webui")
            dl2 = await _download(url, scratch / pkg.name)  # again, to bracket noise
            floor = min(dl, dl2)
            rows.append((f"{fmt}: download alone", floor, 1.0))
            rows.append((f"{fmt}: download then {unpack.split()[0] if fmt == 'zip' else 'zstd|tar'}",
                         dl + then, (dl + then) / floor))
            rows.append((f"{fmt}: sdpanel streamed install", streamed, streamed / floor))
            shutil.rmtree(scratch)
    finally:
        srv.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'':40} {'seconds':>8} {'× download':>11}")
    for label, secs, ratio in rows:
        print(f"{label:40} {secs:8.2f} {ratio:10.2f}×")


if __name__ == "__main__":
    asyncio.run(main())
