"""Two stores or two processes downloading into one folder never share a ``.part``: the
second waits for the first (then finds the file there), every printed hash is the final
file's; the space kept free scales with the disk and is watched during the transfer."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
from aiohttp import web

import sdpanel.storage._root as root_mod
from sdpanel.downloads import DownloadQueue, DownloadSpec
from sdpanel.runtime import EventBus
from sdpanel.storage import ensure_free_space, reserve_bytes
from tests.fixtures.range_server import RangeServer

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server() -> RangeServer:
    with RangeServer(rate=3_000_000) as srv:
        yield srv


async def test_two_stores_one_folder_wait_for_each_other(server: RangeServer, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    server.add_file("shared.bin", data)
    target = tmp_path / "shared-folder"
    queues = [DownloadQueue(tmp_path / f"store{i}", EventBus(), engine="python") for i in (1, 2)]
    try:
        ids = await asyncio.gather(*(q.add(DownloadSpec(server.url("shared.bin"), folder=str(target),
                                                        sha256=digest)) for q in queues))
        await asyncio.gather(*(q.wait_all(timeout=60) for q in queues))
        items = [q.item(i[0]) for q, i in zip(queues, ids, strict=True)]
    finally:
        for q in queues:
            await q.close()
    assert [i["state"] for i in items] == ["done", "done"], [i["error"] for i in items]
    assert sorted(p.name for p in target.iterdir()) == ["shared.bin"], "no copy, no part left"
    assert {i["path"] for i in items} == {str(target / "shared.bin")}
    assert {i["sha256"] for i in items} == {digest}
    probes = [r for r in server.requests("shared.bin") if r.get("range") == "bytes=0-0"]
    assert len(probes) == 1, "the second download fetched too (it should find the file in place)"


def test_two_processes_one_folder_print_the_final_files_hash(server: RangeServer, tmp_path: Path) -> None:
    """Two CLI runs (their own stores) into one --to, no published hash: each prints the
    hash of the file that ends up there."""
    data = os.urandom(3 * MiB)
    server.add_file("cli.bin", data)
    target = tmp_path / "to"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "sdpanel", "download", server.url("cli.bin"),
                               "--to", str(target), "--engine", "python", "--storage", str(tmp_path / f"s{i}")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in (1, 2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    files = sorted(p.name for p in target.iterdir())
    assert files == ["cli.bin", "cli.url.json"], files  # one file (and its sidecar), no copy, no part
    final = hashlib.sha256((target / "cli.bin").read_bytes()).hexdigest()
    assert final == hashlib.sha256(data).hexdigest()
    for out in outs:
        assert final[:12] in out, out


def test_reserve_scales_with_the_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(root_mod.shutil, "disk_usage", lambda p: usage(50 * 10**6, 40 * 10**6, 10 * 10**6))
    assert reserve_bytes(tmp_path) == 50 * 10**6 // 20
    ensure_free_space(tmp_path, 1 * MiB, what="small.safetensors")  # a 1 MiB file fits a 50 MB disk
    monkeypatch.setattr(root_mod.shutil, "disk_usage", lambda p: usage(500 * 1024**3, 0, 500 * 1024**3))
    assert reserve_bytes(tmp_path) == 256 * MiB


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    """A real 24 MiB tmpfs (root only, like tests/e2e's full-disk test)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_unknown_size_stops_before_the_disk_is_full(small_disk: Path, tmp_path: Path) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.enable_chunked_encoding()  # no Content-Length, no ranges
        await resp.prepare(request)
        chunk = os.urandom(256 * 1024)
        for _ in range(200):  # 50 MiB, twice the disk
            await resp.write(chunk)
            await asyncio.sleep(0.05)  # ~5 MiB/s
        return resp

    app = web.Application()
    app.router.add_get("/stream.bin", endless)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    q = DownloadQueue(tmp_path / "store", EventBus(), engine="python", retry_backoff=0.05)
    try:
        [iid] = await q.add(DownloadSpec(f"http://127.0.0.1:{port}/stream.bin", folder=str(small_disk)))
        await q.wait_all(timeout=60)
        item = q.item(iid)
    finally:
        await q.close()
        await runner.cleanup()
    assert item["state"] == "failed" and item["reason"] == "disk_full", item["error"]
    assert "Stopped downloading stream.bin" in item["error"] and "resume" not in item["error"]
    assert os.statvfs(small_disk).f_bavail > 0, "the disk was filled to the last block"
    assert sorted(p.name for p in small_disk.iterdir()) == [], "a part that cannot resume is removed"
