"""The aria2c engine against the local range server, with a real aria2c daemon."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from sdpanel.downloads import Aria2Daemon, Aria2Engine, DownloadError, Transfer
from tests.fixtures.range_server import Fault, RangeServer

pytestmark = pytest.mark.skipif(shutil.which("aria2c") is None, reason="aria2c not installed")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Aria2Daemon]:
    d = Aria2Daemon(tmp_path / "store")
    yield d
    await d.shutdown(grace=0.2)


@pytest.fixture
def server() -> RangeServer:
    with RangeServer(rate=4_000_000) as srv:
        yield srv


def _transfer(url: str, part: Path, data: bytes, **kw: object) -> Transfer:
    return Transfer(url=url, headers={}, part_path=part, size=len(data), **kw)  # type: ignore[arg-type]


async def test_downloads_with_many_connections(daemon: Aria2Daemon, server: RangeServer, tmp_path: Path) -> None:
    data = os.urandom(6 * 1024 * 1024 + 123)
    server.add_file("m.safetensors", data)
    seen: list[tuple[int, int | None, float]] = []
    states = 0

    def save() -> None:
        nonlocal states
        states += 1

    t = _transfer(server.url("m.safetensors"), tmp_path / "out" / "m.safetensors.part", data)
    result = await Aria2Engine(daemon).fetch(t, lambda d, n, s: seen.append((d, n, s)), save)
    assert result.size == len(data)
    assert hashlib.sha256(t.part_path.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert not Path(str(t.part_path) + ".aria2").exists()
    conns = {r[3] for r in server.ranges_served("m.safetensors")}
    assert len(conns) > 1, "aria2 should split the file over several connections"
    dones = [d for d, _, _ in seen]
    assert dones == sorted(dones) and seen[-1][0] == len(data)
    assert states >= 1 and "gid" in t.state


async def test_secret_never_in_argv_and_files_private(daemon: Aria2Daemon) -> None:
    client = await daemon.ensure()
    secret = client._token.removeprefix("token:")
    proc = psutil.Process(daemon.pid)
    assert os.getsid(daemon.pid) == daemon.pid, "started in its own session: outlives the kernel"
    assert secret not in " ".join(proc.cmdline())
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert secret not in ps
    assert stat.S_IMODE(daemon.conf_path.stat().st_mode) == 0o600
    record = json.loads(daemon.pid_path.read_text())
    assert record["pid"] == daemon.pid and record["port"] == client.port
    assert record["name"] == "aria2" and "started" in record and "kind" in record
    assert secret not in daemon.pid_path.read_text()
    listening = [c.laddr for c in proc.net_connections("inet") if c.status == psutil.CONN_LISTEN]
    assert listening and all(a.ip in ("127.0.0.1", "::1") for a in listening)
    # The daemon refuses calls without the secret.
    from sdpanel.downloads import Aria2Client, Aria2RpcError

    wrong = Aria2Client(client.port, "not-the-secret")
    with pytest.raises(Aria2RpcError):
        await wrong.call("aria2.getVersion")
    await wrong.close()


async def test_fresh_process_reattaches_to_running_daemon(daemon: Aria2Daemon) -> None:
    client = await daemon.ensure()
    code = ("import asyncio, json, sys\n"
            "from sdpanel.downloads import Aria2Daemon\n"
            "async def main():\n"
            "    d = Aria2Daemon(sys.argv[1])\n"
            "    c = await d.ensure()\n"
            "    print(json.dumps({'pid': d.pid, 'port': c.port}))\n"
            "    await d.close()\n"
            "asyncio.run(main())\n")
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code, str(daemon.root.path)],
                                  cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen == {"pid": daemon.pid, "port": client.port}


async def test_dead_daemon_record_starts_a_new_one(tmp_path: Path) -> None:
    d = Aria2Daemon(tmp_path / "store")
    await d.ensure()
    first = d.pid
    assert first is not None
    psutil.Process(first).kill()
    await asyncio.sleep(0.2)
    d2 = Aria2Daemon(tmp_path / "store")
    try:
        await d2.ensure()
        assert d2.pid != first
    finally:
        await d2.shutdown(grace=0.2)
        d._popen and d._popen.wait()


async def test_pause_and_resume_keeps_downloaded_bytes(daemon: Aria2Daemon, tmp_path: Path) -> None:
    data = os.urandom(4 * 1024 * 1024)
    with RangeServer(rate=300_000) as srv:
        srv.add_file("p.bin", data)
        engine = Aria2Engine(daemon)
        t = _transfer(srv.url("p.bin"), tmp_path / "p.bin.part", data, connections=4)
        task = asyncio.ensure_future(engine.fetch(t, lambda *a: None, lambda: None))
        await asyncio.sleep(2.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        before = sum(r[2] for r in srv.ranges_served("p.bin"))
        assert 0 < before < len(data)
        assert Path(str(t.part_path) + ".aria2").exists(), "the control file must survive a pause"
        srv.clear_log()
        await engine.fetch(t, lambda *a: None, lambda: None)
        after = sum(r[2] for r in srv.ranges_served("p.bin"))
        assert hashlib.sha256(t.part_path.read_bytes()).digest() == hashlib.sha256(data).digest()
        # Only what was missing is fetched again (plus pieces in flight at the pause).
        assert after <= len(data) - before + 4 * 1024 * 1024 // 4


async def test_expired_signed_url_is_resolved_again(daemon: Aria2Daemon, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024)
    with RangeServer(rate=400_000) as srv:
        srv.add_file("s.bin", data)
        # The connection drops after the link expired (before its first 1 MiB piece is
        # complete, whatever piece order aria2 uses): aria2's next request gets 403.
        srv.add_fault("s.bin", Fault("reset", at=0.25))
        calls = 0

        async def refresh() -> tuple[str, dict[str, str]]:
            nonlocal calls
            calls += 1
            return srv.signed_url("s.bin", ttl=3600), {}

        t = _transfer(srv.signed_url("s.bin", ttl=1.0), tmp_path / "s.bin.part", data,
                      connections=2, refresh_url=refresh)
        await Aria2Engine(daemon).fetch(t, lambda *a: None, lambda: None)
        assert calls >= 1
        assert hashlib.sha256(t.part_path.read_bytes()).digest() == hashlib.sha256(data).digest()
        assert any(r["status"] == 403 for r in srv.requests("/signed/"))


@pytest.mark.parametrize(("fault", "reason"), [
    (None, "not_found"),
    (Fault("status", times=None, status=410), "gone"),
    (Fault("status", times=None, status=401), "auth"),
])
async def test_http_errors_are_mapped(daemon: Aria2Daemon, server: RangeServer, tmp_path: Path,
                                      fault: Fault | None, reason: str) -> None:
    name = "missing.bin" if fault is None else "e.bin"
    if fault is not None:
        server.add_file(name, b"x" * 1000)
        server.add_fault(name, fault)
    t = Transfer(url=server.url(name), headers={}, part_path=tmp_path / "e.part")
    with pytest.raises(DownloadError) as err:
        await Aria2Engine(daemon).fetch(t, lambda *a: None, lambda: None)
    assert err.value.reason == reason
    assert "gid" not in t.state


async def test_headers_are_sent_to_the_byte_host(daemon: Aria2Daemon, server: RangeServer, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    server.add_file("h.bin", data)
    t = Transfer(url=server.url("h.bin"), headers={"X-Test": "yes"}, part_path=tmp_path / "h.part",
                 size=len(data))
    await Aria2Engine(daemon).fetch(t, lambda *a: None, lambda: None)
    assert all(r["headers"].get("X-Test") == "yes" for r in server.requests("h.bin"))
