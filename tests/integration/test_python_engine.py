"""The aiohttp engine against the throttled, fault-injecting range server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdpanel.downloads._engine import Transfer, TransferResult
from sdpanel.downloads._errors import DownloadError
from sdpanel.downloads._python_engine import PythonEngine
from sdpanel.downloads._verify import verify_file
from tests.fixtures.range_server import Fault, RangeServer, RangeServerProcess

MiB = 1 << 20


@pytest.fixture
def server() -> Iterator[RangeServer]:
    with RangeServer() as srv:
        yield srv


def rand(n: int) -> bytes:
    return os.urandom(n)


class Run:
    """One transfer plus what the engine reported through its callbacks."""

    def __init__(self, url: str, part: Path, data: bytes | None = None, **kw: Any) -> None:
        self.t = Transfer(url=url, headers=kw.pop("headers", {}), part_path=part,
                          size=kw.pop("size", len(data) if data is not None else None),
                          sha256=hashlib.sha256(data).hexdigest() if data is not None else None,
                          **kw)
        self.progress: list[tuple[int, int | None, float]] = []
        self.journal: dict[str, Any] = {}
        self.saves: list[float] = []

    def _save(self) -> None:
        # What the queue does: persist a JSON copy (proves the state is serialisable).
        self.journal = json.loads(json.dumps(self.t.state))
        self.saves.append(time.monotonic())

    async def go(self, eng: PythonEngine) -> TransferResult:
        return await eng.fetch(self.t, lambda d, tot, sp: self.progress.append((d, tot, sp)),
                               self._save)


def engine(**kw: Any) -> PythonEngine:
    kw.setdefault("backoff", 0.05)
    return PythonEngine(**kw)


async def test_plain_one_connection(server: RangeServer, tmp_path: Path) -> None:
    data = rand(3 * MiB + 17)
    server.add_file("a.bin", data)
    run = Run(server.url("a.bin"), tmp_path / "a.bin.part", data, connections=1)
    eng = engine()
    res = await run.go(eng)
    await eng.close()
    assert res.size == len(data) and res.sha256 == run.t.sha256
    assert (tmp_path / "a.bin.part").read_bytes() == data
    assert run.progress[-1][0] == len(data)


async def test_parallel_ranges_carry_if_range(server: RangeServer, tmp_path: Path) -> None:
    data = rand(12 * MiB)
    server.add_file("b.bin", data, content_disposition="attachment; filename=\"x.bin\"; "
                    "filename*=UTF-8''mod%C3%A8le.safetensors")
    run = Run(server.url("b.bin"), tmp_path / "b.part", data, connections=6)
    eng = engine()
    res = await run.go(eng)
    await eng.close()
    assert res.sha256 == run.t.sha256 and res.filename == "modèle.safetensors"
    gets = [r for r in server.requests("b.bin") if r["range"] != "bytes=0-0"]
    assert len(gets) >= 6
    etag = server.files["b.bin"].etag
    assert all(r["if_range"] == etag for r in gets)
    assert run.journal["segments"] and all(s[2] == s[1] for s in run.journal["segments"])


async def test_work_stealing_keeps_slow_connections_minor(tmp_path: Path) -> None:
    data = rand(16 * MiB)
    # A quarter of connections 10x slower: a static split would leave them 25 % of the file.
    with RangeServer(rate=4 * MiB, latency=0.02, profile="heterogeneous") as srv:
        srv.add_file("h.bin", data)
        run = Run(srv.url("h.bin"), tmp_path / "h.part", data, connections=8)
        eng = engine()
        res = await run.go(eng)
        await eng.close()
        log = srv.requests("h.bin")
    assert res.sha256 == run.t.sha256
    assert eng.last_stats["splits"] >= 2
    slow = sum(r["bytes_sent"] for r in log if r["slow"])
    total = sum(r["bytes_sent"] for r in log)
    assert slow / total < 0.15, (slow, total)
    # A stolen range starts inside a range an earlier request asked for (no faults here,
    # so it is not a retry).
    ranged = [r for r in log if r["start"] is not None and r["range"] != "bytes=0-0"]
    stolen = [r for i, r in enumerate(ranged)
              if any(p["start"] < r["start"] <= p["end"] for p in ranged[:i])]
    assert len(stolen) >= 2, "no request started inside another's range: nothing was stolen"


async def test_slow_connection_never_holds_up_the_hash(tmp_path: Path) -> None:
    """A slow connection holding a range near the start would stall the SHA-256 cursor
    there, leaving most of the file to hash after the last byte: a fast connection takes
    that range over early, and the slow one moves to the end of the file."""
    data = rand(48 * MiB)
    with RangeServer(rate=8 * MiB, profile="heterogeneous") as srv:
        srv.add_file("g.bin", data)
        run = Run(srv.url("g.bin"), tmp_path / "g.part", data, connections=8)
        eng = engine()
        t0 = time.time()
        res = await run.go(eng)
        took = time.time() - t0
        await eng.close()
        log = srv.requests("g.bin")
    assert res.sha256 == run.t.sha256
    ranged = [r for r in log if r["start"] is not None and r["range"] != "bytes=0-0"]
    firsts = [next(r for r in ranged if r["conn"] == c)
              for c in sorted({r["conn"] for r in ranged if r["slow"]})]
    early = [r for r in firsts if r["start"] < len(data) // 2]
    assert early, "no slow connection started in the first half: the test proves nothing"
    for first in early:
        takeover = [r for r in ranged if not r["slow"] and r["t"] > first["t"]
                    and first["start"] < r["start"] <= first["end"]]
        assert takeover, f"nobody took over the slow connection's range {first['range']}"
        assert takeover[0]["t"] - t0 < 0.6 * took, (takeover[0]["t"] - t0, took)
    # Later requests of slow connections are for the file's end.
    later = [r for r in ranged if r["slow"] and r not in firsts]
    assert all(r["start"] >= len(data) // 2 for r in later), later
    assert eng.last_stats["hash_tail_bytes"] <= len(data) // 2, eng.last_stats


@pytest.mark.parametrize(("rate", "fewest", "most"), [(4e9, 1, 1), (0.2e9, 2, 64)])
async def test_rounds_follow_this_machines_hash_speed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      rate: float, fewest: int, most: int) -> None:
    """A fast hasher finishes a small file's hash at once: one request per connection
    (each extra round costs every connection a first-byte wait); a slow one gets rounds,
    so the hash follows the transfer instead of starting at its end."""
    import sdpanel.downloads._segments as segments

    monkeypatch.setattr(segments, "_HASH_RATE", [rate], raising=False)
    data = rand(24 * MiB)
    with RangeServer(latency=0.05) as srv:
        srv.add_file("r.bin", data)
        run = Run(srv.url("r.bin"), tmp_path / "r.part", data, connections=8)
        eng = engine()
        res = await run.go(eng)
        await eng.close()
    assert res.sha256 == run.t.sha256
    planned = len(run.journal["segments"]) - eng.last_stats["splits"]
    assert 8 * fewest <= planned <= 8 * most and planned % 8 == 0


async def test_server_ignoring_ranges_gives_one_stream(server: RangeServer,
                                                       tmp_path: Path) -> None:
    data = rand(5 * MiB)
    server.add_file("c.bin", data)
    server.add_fault("c.bin", Fault("ignore_range", times=None))
    run = Run(server.url("c.bin"), tmp_path / "c.part", data)
    eng = engine()
    res = await run.go(eng)
    await eng.close()
    assert res.sha256 == run.t.sha256 and eng.last_stats["mode"] == "single"
    # The probe's 200 answer is the stream itself: one request, the file sent once.
    assert [r["status"] for r in server.requests("c.bin")] == [200]


@pytest.mark.parametrize("kind", ["reset", "truncate"])
async def test_broken_ranges_resume_where_they_stopped(server: RangeServer, tmp_path: Path,
                                                       kind: str) -> None:
    data = rand(8 * MiB)
    server.add_file("r.bin", data)
    server.add_fault("r.bin", Fault(kind, times=3, skip=1, at=0.6))  # skip: the probe
    run = Run(server.url("r.bin"), tmp_path / "r.part", data, connections=2)
    eng = engine()
    res = await run.go(eng)
    await eng.close()
    assert res.sha256 == run.t.sha256
    assert eng.last_stats["retries"] >= 3
    log = server.requests("r.bin")
    assert sum(1 for r in log if r["fault"] == kind) == 3
    # A retried range starts after the bytes already written, not at its beginning again.
    # (A reset makes the kernel drop what was still unread in the socket buffer, so after
    # a reset there may be nothing to keep: the offset check is for clean truncations.)
    broken = [(i, r) for i, r in enumerate(log) if r["fault"] == kind]
    resumed = [any(f["start"] < r["start"] <= f["start"] + f["bytes_sent"]
                   and r["end"] <= f["end"] for r in log[i + 1:] if r["start"] is not None)
               for i, f in broken]
    if kind == "truncate":
        assert all(resumed), broken
    assert sum(r["bytes_sent"] for r in log) < 2 * len(data)


async def test_server_errors_are_retried(server: RangeServer, tmp_path: Path) -> None:
    data = rand(2 * MiB)
    server.add_file("e.bin", data)
    server.add_fault("e.bin", Fault("500", times=2))
    server.add_fault("e.bin", Fault("status", status=503, times=2, headers={"Retry-After": "0"}))
    run = Run(server.url("e.bin"), tmp_path / "e.part", data, connections=2)
    eng = engine()
    res = await run.go(eng)
    await eng.close()
    assert res.sha256 == run.t.sha256
    assert [r["status"] for r in server.requests("e.bin")].count(500) == 2


async def test_persistent_server_errors_fail_with_reason(server: RangeServer,
                                                         tmp_path: Path) -> None:
    server.add_file("f.bin", rand(MiB))
    server.add_fault("f.bin", Fault("500", times=None))
    run = Run(server.url("f.bin"), tmp_path / "f.part", size=MiB)
    eng = engine(max_tries=3)
    with pytest.raises(DownloadError) as ei:
        await run.go(eng)
    await eng.close()
    assert ei.value.reason == "server_error" and ei.value.retryable
    assert len(server.requests("f.bin")) == 3


async def test_not_found_fails_at_once(server: RangeServer, tmp_path: Path) -> None:
    run = Run(server.url("missing.bin"), tmp_path / "m.part", size=10)
    eng = engine()
    with pytest.raises(DownloadError) as ei:
        await run.go(eng)
    await eng.close()
    assert ei.value.reason == "not_found" and not ei.value.retryable
    assert len(server.requests("missing")) == 1


async def test_unreachable_host(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = Run(f"http://127.0.0.1:{port}/x.bin", tmp_path / "x.part", size=10)
    eng = engine(max_tries=2)
    with pytest.raises(DownloadError) as ei:
        await run.go(eng)
    await eng.close()
    assert ei.value.reason == "unreachable" and "127.0.0.1" in ei.value.message


async def test_expired_signed_url_is_resolved_again(server: RangeServer,
                                                    tmp_path: Path) -> None:
    data = rand(4 * MiB)
    server.add_file("s.bin", data)
    # The first ranged requests fail; by the retry (backoff ≥ 1.2 s) the 1 s link expired.
    server.add_fault("s.bin", Fault("500", times=2, skip=1))
    refreshed: list[str] = []

    async def refresh() -> tuple[str, dict[str, str]]:
        refreshed.append("x")
        return server.signed_url("s.bin", ttl=600), {}

    run = Run(server.signed_url("s.bin", ttl=1), tmp_path / "s.part", data, connections=2,
              refresh_url=refresh)
    eng = engine(backoff=1.5)
    res = await run.go(eng)
    await eng.close()
    assert res.sha256 == run.t.sha256 and refreshed
    statuses = [r["status"] for r in server.requests("s.bin")]
    assert 403 in statuses and statuses[-1] == 206


async def test_changed_file_restarts_instead_of_mixing(tmp_path: Path) -> None:
    old, new = rand(6 * MiB), rand(6 * MiB)
    with RangeServer(rate=2 * MiB) as srv:
        srv.add_file("v.bin", old)
        run = Run(srv.url("v.bin"), tmp_path / "v.part", size=len(old), connections=2)
        eng = engine()
        task = asyncio.ensure_future(run.go(eng))
        while not run.progress or run.progress[-1][0] < MiB:
            await asyncio.sleep(0.05)
        srv.add_file("v.bin", new)  # replaced upstream: new ETag
        srv.abort_active()
        res = await task
        await eng.close()
        log = srv.requests("v.bin")
    assert eng.last_stats["restarts"] == 1
    assert res.sha256 == hashlib.sha256(new).hexdigest()
    assert (tmp_path / "v.part").read_bytes() == new
    assert any(r["if_range"] and r["status"] == 200 for r in log)


async def test_file_that_keeps_changing_fails(server: RangeServer, tmp_path: Path) -> None:
    server.add_file("k.bin", rand(4 * MiB))
    server.add_fault("k.bin", Fault("change", times=None, ranged_only=True))
    run = Run(server.url("k.bin"), tmp_path / "k.part", size=4 * MiB, connections=2)
    eng = engine()
    with pytest.raises(DownloadError) as ei:
        await run.go(eng)
    await eng.close()
    assert ei.value.reason == "changed_upstream"


async def test_cancel_then_resume_fetches_no_done_range_again(tmp_path: Path) -> None:
    data = rand(16 * MiB)
    with RangeServer(rate=3 * MiB, latency=0.02) as srv:
        srv.add_file("z.bin", data)
        part = tmp_path / "z.part"
        run = Run(srv.url("z.bin"), part, data, connections=4)
        eng = engine()
        task = asyncio.ensure_future(run.go(eng))
        while not run.progress or run.progress[-1][0] < 5 * MiB:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await eng.close()
        saved = json.loads(json.dumps(run.journal))  # what the journal would hold
        # Saved about once a second, not per chunk (plus once at start and at the end).
        gaps = [b - a for a, b in zip(run.saves[1:-1], run.saves[2:-1], strict=False)]
        assert all(g >= 0.9 for g in gaps), gaps
        done = [(a, d) for a, _, d in saved["segments"] if d > a]
        done_bytes = sum(d - a for a, d in done)
        assert done_bytes >= 4 * MiB
        on_disk = part.read_bytes()
        assert all(on_disk[a:d] == data[a:d] for a, d in done)
        n_before = len(srv.requests("z.bin"))

        run2 = Run(srv.url("z.bin"), part, data, connections=4)
        run2.t.state = saved
        eng2 = engine()
        res = await run2.go(eng2)
        await eng2.close()
        after = srv.requests("z.bin")[n_before:]
    assert res.sha256 == run.t.sha256 and part.read_bytes() == data
    assert eng2.last_stats["resumed_bytes"] == done_bytes
    assert after[0]["range"] == "bytes=0-0" and after[0]["if_range"]
    for r in after[1:]:
        if r["start"] is None:
            continue
        for a, d in done:
            assert r["end"] < a or r["start"] >= d, f"refetched done bytes {a}-{d}: {r}"


class WatchedRun(Run):
    """A run that also records, with each progress report, how many bytes the saved state
    claimed as written then, and checks at every save that each claimed byte is on disk."""

    def __init__(self, url: str, part: Path, data: bytes, **kw: Any) -> None:
        super().__init__(url, part, data, **kw)
        self.data = data
        self.reports: list[tuple[int, int]] = []
        self.unwritten_claims: list[tuple[int, int]] = []

    def written(self) -> int:
        return sum(d - a for a, _, d in self.journal.get("segments") or [])

    def _save(self) -> None:
        super()._save()
        on_disk = self.t.part_path.read_bytes()
        self.unwritten_claims += [(a, d) for a, _, d in self.journal.get("segments") or []
                                  if on_disk[a:d] != self.data[a:d]]

    async def go(self, eng: PythonEngine) -> TransferResult:
        def progress(done: int, total: int | None, speed: float) -> None:
            self.progress.append((done, total, speed))
            self.reports.append((done, self.written()))

        return await eng.fetch(self.t, progress, self._save)


@pytest.mark.parametrize("mode", ["ranges", "single"])
async def test_progress_moves_with_received_bytes_state_claims_only_written(
        tmp_path: Path, mode: str) -> None:
    """At ~300 kB/s a connection takes seconds to fill its 1 MiB write buffer: the progress
    bar must move as bytes arrive, not sit still and jump at each flush, while the saved
    state (what a resume trusts) never claims a byte that is not on disk."""
    data = rand(4 * MiB)
    with RangeServer(rate=300_000) as srv:
        srv.add_file("w.bin", data)
        if mode == "single":
            srv.add_fault("w.bin", Fault("ignore_range", times=None))
        run = WatchedRun(srv.url("w.bin"), tmp_path / "w.part", data, connections=2)
        eng = engine()
        task = asyncio.ensure_future(run.go(eng))
        deadline = time.monotonic() + 60
        while run.written() == 0:  # until a first buffer is written and saved
            if task.done():
                task.result()
            assert time.monotonic() < deadline, run.progress
            await asyncio.sleep(0.05)
        # Cancelled with buffers half full: those bytes were reported but must not be saved.
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await eng.close()
    assert eng.last_stats["mode"] == mode
    assert run.unwritten_claims == []
    dones = [d for d, _ in run.reports]
    assert dones == sorted(dones)
    # Old behaviour: done stayed 0 until the first 1 MiB write, then jumped by ≥ 1 MiB.
    before_first_write = {d for d, claimed in run.reports if claimed == 0 and 0 < d < MiB}
    assert len(before_first_write) >= 4, run.reports
    # Received runs ahead of written, never behind it.
    assert all(d >= claimed for d, claimed in run.reports), run.reports
    assert 0 < run.written() <= len(data)


async def test_html_page_fails_cleanly(server: RangeServer, tmp_path: Path) -> None:
    server.add_file("p.safetensors", rand(MiB))
    server.add_fault("p.safetensors", Fault("html", times=None))
    eng = engine()
    # Size known: the engine refuses at once.
    run = Run(server.url("p.safetensors"), tmp_path / "p.safetensors.part", size=MiB)
    with pytest.raises(DownloadError) as ei:
        await run.go(eng)
    assert ei.value.reason == "html_instead_of_model"
    # Size unknown: the page downloads, and verification refuses it.
    run = Run(server.url("p.safetensors"), tmp_path / "q.safetensors.part")
    res = await run.go(eng)
    await eng.close()
    with pytest.raises(DownloadError) as ei:
        verify_file(run.t.part_path, None, None, "q.safetensors",
                    content_type=res.content_type, computed_sha256=res.sha256)
    assert ei.value.reason == "html_instead_of_model"


async def test_token_never_follows_redirect_to_storage(tmp_path: Path) -> None:
    data = rand(MiB)
    with RangeServer(require_token="sekret") as srv:
        srv.add_file("t.bin", data)
        run = Run(srv.redirect_url("t.bin"), tmp_path / "t.part", data,
                  headers={"Authorization": "Bearer sekret"}, connections=2)
        eng = engine()
        res = await run.go(eng)
        await eng.close()
        log = srv.requests()
    assert res.sha256 == run.t.sha256
    api = [r for r in log if r["path"].startswith("/redirect/")]
    storage = [r for r in log if r["path"].startswith("/signed/")]
    assert api and all(r["host"] == "127.0.0.1" for r in api)
    assert storage and all(r["host"] == "localhost" for r in storage)
    assert all("Authorization" not in r["headers"] for r in storage)
    assert "sekret" not in json.dumps(run.journal)


@pytest.mark.slow
def test_memory_bounded_for_a_large_file(tmp_path: Path) -> None:
    size = 256 * MiB
    root = tmp_path / "srv"
    root.mkdir()
    with open(root / "big.bin", "wb") as f:
        for i in range(size // (16 * MiB)):
            f.write(hashlib.sha256(str(i).encode()).digest() * (16 * MiB // 32))
    with RangeServerProcess(root) as proc:
        script = textwrap.dedent(f"""
            import asyncio, json, resource
            from pathlib import Path
            from sdpanel.downloads._engine import Transfer
            from sdpanel.downloads._python_engine import PythonEngine
            async def main():
                eng = PythonEngine()
                t = Transfer(url={proc.url("big.bin")!r}, headers={{}},
                             part_path=Path({str(tmp_path / "big.part")!r}), size={size})
                res = await eng.fetch(t, lambda *a: None, lambda: None)
                await eng.close()
                # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so it would
                # report the forking pytest process's size, not this one's.
                try:
                    hwm = [int(ln.split()[1]) for ln in open("/proc/self/status")
                           if ln.startswith("VmHWM:")][0]
                except OSError:
                    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                print(json.dumps({{"sha": res.sha256, "rss_kb": hwm}}))
            asyncio.run(main())
        """)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parents[2], timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    with open(root / "big.bin", "rb") as f:
        h = hashlib.sha256()
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    assert report["sha"] == h.hexdigest()
    print("peak RSS", report["rss_kb"] // 1024, "MiB")
    assert report["rss_kb"] * 1024 < 200 * 1000 * 1000, report


async def test_cancel_in_one_stream_mode_keeps_a_consistent_part(tmp_path: Path) -> None:
    data = rand(6 * MiB)
    with RangeServer(rate=2 * MiB) as srv:
        srv.add_file("o.bin", data)
        srv.add_fault("o.bin", Fault("ignore_range", times=None))
        part = tmp_path / "o.part"
        run = Run(srv.url("o.bin"), part, data)
        eng = engine()
        task = asyncio.ensure_future(run.go(eng))
        while not run.progress or run.progress[-1][0] < 2 * MiB:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        (_, _, done), = run.journal["segments"]
        assert done >= MiB and part.read_bytes()[:done] == data[:done]
        # Ranges still ignored: nothing to resume from, so it starts over and still verifies.
        run2 = Run(srv.url("o.bin"), part, data)
        run2.t.state = run.journal
        res = await run2.go(eng)
        await eng.close()
    assert res.sha256 == run.t.sha256 and part.read_bytes() == data
