"""Content index benchmark: 10,000 files.

- first hashing throughput of ``ContentIndex.scan`` vs ``sha256sum`` (coreutils, what a user
  would run) on the same files in the same run, page cache warm for both, best of N rounds;
- rescan with nothing changed (only ``lstat`` + one SQLite read), target < 1 s;
- the digests are checked against sha256sum's.

Run: ``python tests/benchmarks/bench_index.py [--files 10000] [--size-kib 64] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sdpanel.storage import ContentIndex, StorageRoot  # noqa: E402


def make_tree(base: Path, files: int, size: int) -> list[Path]:
    paths = []
    block = os.urandom(size + files)
    for i in range(files):
        d = base / "checkpoints" / f"d{i // 500:03d}"
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"m{i:05d}.safetensors"
        p.write_bytes(block[i:i + size])  # distinct content per file
        paths.append(p)
    return paths


def run_sha256sum(base: Path) -> tuple[float, dict[str, str]]:
    t = time.perf_counter()
    out = subprocess.run(
        f"find {base / 'checkpoints'} -type f -print0 | xargs -0 sha256sum",
        shell=True, check=True, capture_output=True, text=True).stdout
    dt = time.perf_counter() - t
    digests = {}
    for line in out.splitlines():
        digest, path = line.split(None, 1)
        digests[path.lstrip("*")] = digest
    return dt, digests


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--size-kib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="storage-bench-"))
    try:
        root = StorageRoot.at(base).ensure()
        paths = make_tree(root.path, args.files, args.size_kib * 1024)
        total = sum(p.stat().st_size for p in paths)
        print(f"{len(paths)} files, {total / 2**20:.0f} MiB, {os.cpu_count()} CPUs")
        tool_times, ours_times = [], []
        digests: dict[str, str] = {}
        entries = []
        for _ in range(args.rounds):
            dt, digests = run_sha256sum(root.path)
            tool_times.append(dt)
            (root.state_dir / "index.sqlite").unlink(missing_ok=True)
            for extra in ("-wal", "-shm"):
                Path(str(root.state_dir / "index.sqlite") + extra).unlink(missing_ok=True)
            t = time.perf_counter()
            entries = ContentIndex(root).scan([root.path / "checkpoints"], hash="all")
            ours_times.append(time.perf_counter() - t)
        one_thread = []
        for _ in range(args.rounds):
            (root.state_dir / "index.sqlite").unlink(missing_ok=True)
            for extra in ("-wal", "-shm"):
                Path(str(root.state_dir / "index.sqlite") + extra).unlink(missing_ok=True)
            t = time.perf_counter()
            ContentIndex(root, workers=1).scan([root.path / "checkpoints"], hash="all")
            one_thread.append(time.perf_counter() - t)
        mismatched = [e.path for e in entries if digests.get(str(e.path)) != e.sha256]
        assert len(entries) == len(paths) and not mismatched, f"digest mismatch: {mismatched[:3]}"
        rescans = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            again = ContentIndex(root).scan([root.path / "checkpoints"], hash="all")
            rescans.append(time.perf_counter() - t)
        assert all(e.sha256 for e in again)
        tool, ours, rescan = min(tool_times), min(ours_times), min(rescans)
        mib = total / 2**20
        print(f"sha256sum           {tool:7.3f} s  {mib / tool:8.1f} MiB/s  (best of {args.rounds})")
        print(f"ContentIndex first  {ours:7.3f} s  {mib / ours:8.1f} MiB/s  (best of {args.rounds})")
        single = min(one_thread)
        print(f"  same, 1 thread    {single:7.3f} s  {mib / single:8.1f} MiB/s")
        print(f"rescan unchanged    {rescan:7.3f} s  (target < 1 s)")
        print(f"RATIO first-hash throughput ours/sha256sum = {tool / ours:.2f}x (target >= 0.8)")
        print(f"RATIO 1-thread ours/sha256sum = {tool / single:.2f}x")
        print(f"RATIO rescan / first hash = {rescan / ours:.3f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
