"""Verification rides on the transfer: both engines hand the queue the SHA-256 of the
bytes they wrote, so a finished transfer is a verified file with no second read of it,
and a file whose source published no hash gets ours recorded. With a real aria2c daemon
and the local range server."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import sdpanel.downloads._verify as verify
from sdpanel.downloads import Aria2Daemon, Aria2Engine, DownloadQueue, DownloadSpec, Transfer
from sdpanel.downloads._aria2_hash import complete_prefix
from tests.fixtures.range_server import RangeServer
from tests.fixtures.waiting import wait_for

needs_aria2 = pytest.mark.skipif(shutil.which("aria2c") is None, reason="aria2c not installed")
MiB = 1 << 20
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server() -> RangeServer:
    # 4 connections × 1 MB/s: a 12 MiB file takes ~3 s, long enough to hash behind aria2.
    with RangeServer(rate=1_000_000) as srv:
        yield srv


@pytest.fixture
def full_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every whole-file hash pass the queue makes after a transfer (the "second pass")."""
    seen: list[Path] = []
    original = verify.file_sha256

    def counting(path: Path | str, block: int = 4 << 20) -> str:
        seen.append(Path(path))
        return original(path, block)

    monkeypatch.setattr(verify, "file_sha256", counting)
    return seen


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Aria2Daemon]:
    d = Aria2Daemon(tmp_path / "store")
    yield d
    await d.shutdown(grace=0.2)


def test_complete_prefix_reads_the_bitfield_from_piece_zero() -> None:
    st: dict[str, Any] = {"status": "active", "totalLength": str(10 * MiB), "pieceLength": str(MiB)}
    assert complete_prefix({**st, "bitfield": "00"}) == 0
    assert complete_prefix({**st, "bitfield": "e0"}) == 3 * MiB      # 1110 0000
    assert complete_prefix({**st, "bitfield": "ff7f"}) == 8 * MiB    # piece 8 missing
    assert complete_prefix({**st, "bitfield": "ffc0"}) == 10 * MiB   # all ten
    assert complete_prefix({**st, "bitfield": "7f"}) == 0            # piece 0 missing
    assert complete_prefix({**st, "status": "complete", "bitfield": ""}) == 10 * MiB


@needs_aria2
async def test_aria2_engine_hashes_behind_the_writer(daemon: Aria2Daemon, server: RangeServer,
                                                     tmp_path: Path) -> None:
    data = os.urandom(12 * MiB + 321)
    server.add_file("big.safetensors", data)
    t = Transfer(url=server.url("big.safetensors"), headers={}, connections=4,
                 part_path=tmp_path / "out" / "big.safetensors.part", size=len(data))
    engine = Aria2Engine(daemon)
    result = await engine.fetch(t, lambda *_: None, lambda: None)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.sha256 == hashlib.sha256(t.part_path.read_bytes()).hexdigest()
    stats = engine.last_stats
    # Most of the file was hashed while aria2 was still writing it.
    assert stats["hashed_during_bytes"] > len(data) // 2, stats
    assert stats["hash_tail_bytes"] + stats["hashed_during_bytes"] == len(data)


@needs_aria2
@pytest.mark.parametrize("published", [True, False])
async def test_aria2_queue_verifies_without_a_second_pass(
        tmp_path: Path, server: RangeServer, full_reads: list[Path], published: bool) -> None:
    data = os.urandom(6 * MiB + 7)
    digest = hashlib.sha256(data).hexdigest()
    server.add_file("lora.bin", data)
    q = DownloadQueue(tmp_path / "store", engine="aria2", connections=4)
    try:
        [item_id] = await q.add(DownloadSpec(server.url("lora.bin"), kind="loras",
                                             sha256=digest if published else None))
        [item] = await q.wait([item_id], timeout=120)
    finally:
        await q.close(stop_idle_daemon=True)
    assert item["state"] == "done", item["error"]
    # Published or not, the recorded hash is the file's own, and nothing read it twice.
    assert item["sha256"] == digest == hashlib.sha256(Path(item["path"]).read_bytes()).hexdigest()
    assert full_reads == []


async def test_python_queue_verifies_without_a_second_pass(
        tmp_path: Path, server: RangeServer, full_reads: list[Path]) -> None:
    data = os.urandom(6 * MiB + 7)
    server.add_file("vae.bin", data)
    q = DownloadQueue(tmp_path / "store", engine="python", connections=4)
    try:
        [item_id] = await q.add(DownloadSpec(server.url("vae.bin"), kind="vae"))
        [item] = await q.wait([item_id], timeout=120)
    finally:
        await q.close()
    assert item["state"] == "done", item["error"]
    assert item["sha256"] == hashlib.sha256(data).hexdigest()
    assert full_reads == []


def _cli_download(url: str, store: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sdpanel", "download", url, "--engine", "aria2",
                           "--storage", str(store), "--to", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=180)


@needs_aria2
async def test_cli_reattaches_to_the_running_daemon(daemon: Aria2Daemon, server: RangeServer,
                                                    tmp_path: Path) -> None:
    """A notebook's daemon is running: the command uses it and leaves it running."""
    client = await daemon.ensure()
    record = daemon.pid_path.read_text()
    data = os.urandom(2 * MiB)
    server.add_file("emb.bin", data)
    done = await asyncio.to_thread(_cli_download, server.url("emb.bin"), daemon.root.path,
                                   tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(data).hexdigest() in done.stdout
    assert daemon.pid_path.read_text() == record, "the command started a daemon of its own"
    assert psutil.pid_exists(daemon.pid or -1)
    assert (await client.call("aria2.getVersion"))["version"]
    agents = {r["headers"].get("User-Agent", "") for r in server.requests("emb.bin", method="GET")}
    assert any(a.startswith("aria2") for a in agents)


@needs_aria2
async def test_cli_stops_the_daemon_it_started_without_waiting_for_it(
        server: RangeServer, tmp_path: Path) -> None:
    data = os.urandom(MiB)
    server.add_file("vae2.bin", data)
    store = tmp_path / "store"
    done = await asyncio.to_thread(_cli_download, server.url("vae2.bin"), store, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    d = Aria2Daemon(store)
    assert not d.pid_path.exists(), "no record of a daemon left for the next command to attach to"
    own = [p for p in psutil.process_iter(["name", "cmdline"]) if p.info["name"] == "aria2c"
           and any(str(d.conf_path) in a for a in p.info["cmdline"] or [])]
    # It goes by itself (TERM): no daemon of a one-shot command outlives it for long.
    wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in own),
             timeout=30, what="the command's aria2c daemon to exit")


@needs_aria2
async def test_aria2_completion_comes_from_the_notification(daemon: Aria2Daemon, server: RangeServer,
                                                            tmp_path: Path) -> None:
    """With status polling effectively off, the transfer still ends when aria2 says so
    (onDownloadComplete over the WebSocket), hashed: no fixed-interval wait at the end."""
    data = os.urandom(3 * MiB)
    server.add_file("cn.bin", data)
    t = Transfer(url=server.url("cn.bin"), headers={}, connections=4,
                 part_path=tmp_path / "out" / "cn.bin.part", size=len(data))
    engine = Aria2Engine(daemon, poll_interval=3600.0)
    result = await asyncio.wait_for(engine.fetch(t, lambda *_: None, lambda: None), 120)
    assert result.sha256 == hashlib.sha256(data).hexdigest()


def test_aria2_split_size_bounds_the_requests_per_connection() -> None:
    """Lowest-first pieces cost one request each: the split grows with the file so a
    2 GiB file is about 8 requests per connection, not 2048 in all."""
    from sdpanel.downloads._aria2_engine import split_size

    assert split_size(None, 16) == "1M" and split_size(12 * MiB, 4) == "1M"
    assert split_size(2 << 30, 16) == "16M" and split_size(256 * MiB, 16) == "2M"
    assert split_size(100 << 30, 16) == "64M"


class _GoneClient:
    """An RPC client for a GID whose result was already removed (aria2 answers an error)."""

    def __init__(self, error: bool) -> None:
        self.error, self.calls = error, 0

    async def call(self, method: str, *params: Any, timeout: float = 10.0) -> Any:
        from sdpanel.downloads import Aria2RpcError

        self.calls += 1
        if self.error:
            raise Aria2RpcError(1, "GID 1234 is not found")
        return {"status": "active", "totalLength": "0"}


@pytest.mark.parametrize("error", [True, False])
async def test_piece_hasher_ends_without_relying_on_cancel(tmp_path: Path, error: bool) -> None:
    """The hasher ends when aria2 forgets the GID, or when stopped, even if a cancel is
    lost (Python 3.11's wait_for can swallow one): a batch once hung on this forever."""
    from concurrent.futures import ThreadPoolExecutor

    from sdpanel.downloads._aria2_hash import PieceHasher

    client = _GoneClient(error)
    with ThreadPoolExecutor(1) as pool:
        hasher = PieceHasher(tmp_path / "x.part", pool, interval=0.01)
        task = asyncio.ensure_future(hasher.run(client, "1234"))  # type: ignore[arg-type]
        if not error:
            await asyncio.sleep(0.05)
            hasher.stop()
        await asyncio.wait_for(task, 30)
        await hasher.close()
    assert client.calls >= 1
