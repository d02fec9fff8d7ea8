"""DownloadQueue against the local range server: verification, naming, concurrency,
priorities, pause/resume/cancel/retry, journal restore, free space."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sdpanel.downloads import DownloadQueue, DownloadSpec
from sdpanel.runtime import ErrorEvent, Event, EventBus, ProgressEvent, StateEvent
from tests.fixtures.range_server import Fault, RangeServer

ENGINES = ["python"] + (["aria2"] if shutil.which("aria2c") else [])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob(n: int, seed: int = 0) -> bytes:
    # A valid-looking binary (not text, not HTML) of n bytes.
    return (hashlib.sha256(str(seed).encode()).digest() * (n // 32 + 1))[:n]


def safetensors_blob(n: int, seed: int = 0) -> bytes:
    """A valid .safetensors file with one U8 tensor of ``n`` bytes."""
    header = json.dumps({"t": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + blob(n, seed)


@pytest.fixture
def server() -> Iterator[RangeServer]:
    with RangeServer(rate=8_000_000) as srv:
        yield srv


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
async def make_queue(tmp_path: Path, events: list[Event]) -> AsyncIterator[Any]:
    queues: list[DownloadQueue] = []
    bus = EventBus()
    bus.subscribe(events.append, topics={"downloads"})

    def make(**kw: Any) -> DownloadQueue:
        kw.setdefault("engine", "python")
        kw.setdefault("retry_backoff", 0.05)
        q = DownloadQueue(tmp_path / "store", bus, **kw)
        queues.append(q)
        return q

    yield make
    for q in queues:
        await q.close()
    if shutil.which("aria2c"):
        from sdpanel.downloads import Aria2Daemon

        await Aria2Daemon(tmp_path / "store").shutdown(grace=0.2)


@pytest.mark.parametrize("engine", ENGINES)
async def test_verified_download_lands_in_kind_folder_with_sidecar(
        make_queue: Any, server: RangeServer, events: list[Event], engine: str) -> None:
    data = blob(3 * 1024 * 1024 + 7)
    server.add_file("lora.bin", data)
    q = make_queue(engine=engine)
    [item_id] = await q.add(DownloadSpec(server.url("lora.bin"), kind="loras", filename="My LoRA.bin",
                                         size=len(data), sha256=sha(data), source="civitai",
                                         metadata={"modelId": 1, "name": "My LoRA"}))
    items = await q.wait_all(timeout=30)
    final = q.root.path / "loras" / "My LoRA.bin"
    assert items[0]["state"] == "done", items[0]
    assert final.read_bytes() == data and items[0]["sha256"] == sha(data)
    assert json.loads((q.root.path / "loras" / "My LoRA.civitai.json").read_text())["modelId"] == 1
    assert not list((q.root.path / "loras").glob("*.part*"))
    states = [e.state for e in events if isinstance(e, StateEvent) and e.key == item_id]
    assert states[0] == "queued" and "active" in states and states[-1] == "done"
    assert any(isinstance(e, ProgressEvent) and e.key == item_id for e in events)
    assert any(isinstance(e, StateEvent) and e.key == "queue" and e.state == "idle" for e in events)
    journal = json.loads((q.root.state_dir / "journals" / "downloads.json").read_text())
    assert journal["items"][0]["state"] == "done"


async def test_concurrency_limit_and_priorities(make_queue: Any, events: list[Event]) -> None:
    with RangeServer(rate=1_000_000) as srv:
        files = {f"f{i}.bin": blob(600_000, i) for i in range(5)}
        for name, data in files.items():
            srv.add_file(name, data)
        q = make_queue(max_concurrent=2, connections=2)
        specs = [DownloadSpec(srv.url(n), folder="out", priority=p, sha256=sha(d))
                 for (n, d), p in zip(files.items(), [0, 5, 1, 9, 0], strict=True)]
        ids = await q.add(specs)
        items = await q.wait_all(timeout=60)
    assert all(i["state"] == "done" for i in items)
    order, running, peak = [], set(), 0
    for e in events:
        if isinstance(e, StateEvent) and e.key in ids:
            if e.state == "active":
                order.append(ids.index(e.key))
                running.add(e.key)
                peak = max(peak, len(running))
            elif e.state in ("done", "failed"):
                running.discard(e.key)
    # Two files fill connections at once; a file in its tail lets the next start on the
    # connections it frees (the connection budget holds: test_queue_connections.py).
    assert 2 <= peak <= 4  # never more than twice the files at once
    assert order == [3, 1, 2, 0, 4]  # priority 9, 5, 1, then 0s in the order added


async def test_pause_resume_cancel_retry(make_queue: Any, tmp_path: Path) -> None:
    # The python engine writes 1 MiB chunks: sizes leave a few whole chunks before the pause.
    data = blob(6 * 1024 * 1024, 1)
    with RangeServer(rate=1_000_000) as srv:
        srv.add_file("p.bin", data)
        srv.add_file("c.bin", data)
        q = make_queue(connections=2)
        pid, cid = await q.add([DownloadSpec(srv.url("p.bin"), folder="out", sha256=sha(data)),
                                DownloadSpec(srv.url("c.bin"), folder="out", sha256=sha(data))])
        await asyncio.sleep(2.0)
        await q.pause(pid)
        await q.cancel(cid)
        out = q.root.path / "out"
        assert q.item(pid)["state"] == "paused" and q.item(cid)["state"] == "cancelled"
        assert (out / "p.bin.part").exists() and not (out / "p.bin").exists()
        assert not list(out.glob("c.bin*")), "a cancelled download leaves nothing behind"
        fetched_before = sum(r[2] for r in srv.ranges_served("p.bin"))
        assert 0 < fetched_before < len(data)
        srv.clear_log()
        await q.resume(pid)
        await q.wait_all(timeout=60)
        assert (out / "p.bin").read_bytes() == data
        refetched = sum(r[2] for r in srv.ranges_served("p.bin"))
        assert refetched < len(data) - fetched_before + 2 * 1024 * 1024  # ≤ 1 chunk per connection
        await q.retry(cid)
        await q.wait_all(timeout=60)
        assert q.item(cid)["state"] == "done" and (out / "c.bin").read_bytes() == data


async def test_failure_then_retry(make_queue: Any, server: RangeServer, events: list[Event]) -> None:
    q = make_queue()
    [iid] = await q.add(DownloadSpec(server.url("later.bin"), folder="out"))
    await q.wait_all(timeout=30)
    item = q.item(iid)
    assert item["state"] == "failed" and item["reason"] == "not_found"
    assert "404" in item["error"]
    assert any(isinstance(e, ErrorEvent) and e.error_type == "not_found" for e in events)
    data = blob(100_000, 3)
    server.add_file("later.bin", data)
    await q.retry(iid)
    await q.wait_all(timeout=30)
    assert q.item(iid)["state"] == "done"


async def test_journal_restore_resumes_unfinished(make_queue: Any, tmp_path: Path) -> None:
    data = blob(6 * 1024 * 1024, 4)
    with RangeServer(rate=1_000_000) as srv:
        srv.add_file("j.bin", data)
        q1 = make_queue(connections=2)
        [iid] = await q1.add(DownloadSpec(srv.url("j.bin"), kind="vae", sha256=sha(data)))
        await asyncio.sleep(2.0)
        await q1.close()  # like a kernel restart: the journal keeps it active
        saved = json.loads((q1.root.state_dir / "journals" / "downloads.json").read_text())
        assert saved["items"][0]["state"] == "active"
        got = sum(r[2] for r in srv.ranges_served("j.bin"))
        srv.clear_log()
        q2 = make_queue(connections=2)
        assert await q2.restore() == [iid]
        await q2.wait_all(timeout=60)
        assert q2.item(iid)["state"] == "done"
        assert (q2.root.path / "vae" / "j.bin").read_bytes() == data
        assert sum(r[2] for r in srv.ranges_served("j.bin")) < len(data) - got + 2 * 1024 * 1024


@pytest.mark.parametrize("known_size", [True, False])
async def test_free_space_shortfall_is_named(make_queue: Any, server: RangeServer,
                                             monkeypatch: pytest.MonkeyPatch, known_size: bool) -> None:
    import sdpanel.storage._root as root_mod

    data = blob(1024 * 1024, 5)
    server.add_file("big.bin", data)
    monkeypatch.setattr(root_mod, "free_bytes", lambda path: 100 * 1024**2)  # < data + 256 MiB reserve
    q = make_queue()
    [iid] = await q.add(DownloadSpec(server.url("big.bin"), folder="out",
                                     size=len(data) if known_size else None))
    await q.wait_all(timeout=30)
    item = q.item(iid)
    assert item["state"] == "failed" and item["reason"] == "disk_full"
    assert "short by" in item["error"] and "big.bin" in item["error"]
    assert not (q.root.path / "out" / "big.bin").exists()


async def test_already_present_is_not_downloaded_again(make_queue: Any, server: RangeServer) -> None:
    data = blob(300_000, 6)
    server.add_file("same.bin", data)
    q = make_queue()
    (q.root.path / "out").mkdir(parents=True)
    (q.root.path / "out" / "same.bin").write_bytes(data)
    [iid] = await q.add(DownloadSpec(server.url("same.bin"), folder="out", sha256=sha(data)))
    await q.wait_all(timeout=30)
    assert q.item(iid)["state"] == "done"
    assert server.requests("same.bin") == []


async def test_same_name_other_content_keeps_both(make_queue: Any, server: RangeServer) -> None:
    data = blob(300_000, 7)
    server.add_file("dup.bin", data)
    q = make_queue()
    (q.root.path / "out").mkdir(parents=True)
    (q.root.path / "out" / "dup.bin").write_bytes(b"older model")
    [iid] = await q.add(DownloadSpec(server.url("dup.bin"), folder="out"))
    await q.wait_all(timeout=30)
    assert (q.root.path / "out" / "dup.bin").read_bytes() == b"older model"
    assert (q.root.path / "out" / "dup (2).bin").read_bytes() == data
    assert q.item(iid)["path"].endswith("dup (2).bin")


@pytest.mark.parametrize(("fault", "reason"), [
    ("html", "html_instead_of_model"), ("checksum", "checksum"),
])
async def test_bad_content_never_gets_the_real_name(make_queue: Any, server: RangeServer,
                                                    fault: str, reason: str) -> None:
    data = safetensors_blob(200_000, 8)
    server.add_file("m.safetensors", data)
    expected = sha(data)
    if fault == "html":
        server.add_fault("m.safetensors", Fault("html", times=None))
    else:
        expected = sha(b"something else")
    q = make_queue(max_attempts=1)
    [iid] = await q.add(DownloadSpec(server.url("m.safetensors"), folder="out", sha256=expected))
    await q.wait_all(timeout=30)
    item = q.item(iid)
    assert item["state"] == "failed" and item["reason"] == reason, item
    assert not list((q.root.path / "out").glob("m.safetensors*")), os.listdir(q.root.path / "out")


@pytest.mark.parametrize("engine", ENGINES)
async def test_civitai_expired_signed_url_is_resolved_again(make_queue: Any, engine: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The CivitAI-compatible server's signed URL expires between resolve and the first
    byte: the queue resolves the API link again (token on the API host) and finishes."""
    import sdpanel.downloads._attempt as queue_mod
    from tests.fixtures.civitai_server import CivitAIServer

    with CivitAIServer(extra_models=0) as srv:
        real, calls = queue_mod.resolve, []

        async def resolve_then_expire(*args: Any, **kw: Any) -> Any:
            got = await real(*args, **kw)
            calls.append(got.url)
            if len(calls) == 1:
                srv.expire_signed_urls()
            return got

        monkeypatch.setattr(queue_mod, "resolve", resolve_then_expire)
        version = srv.model(1001)["modelVersions"][0]
        f = next(x for x in version["files"] if x.get("primary"))
        q = make_queue(engine=engine, tokens={"CIVITAI_TOKEN": srv.token})
        [iid] = await q.add(DownloadSpec(f"{srv.base_url}/api/download/models/{version['id']}",
                                         kind="checkpoints", source="civitai",
                                         size=len(srv.payload(f["id"])),
                                         sha256=f["hashes"]["SHA256"].lower()))
        await q.wait_all(timeout=30)
        item = q.item(iid)
        assert item["state"] == "done", item
        assert len(calls) >= 2 and calls[0] != calls[1]
        assert item["name"] == f["name"]  # from the signed URL's response-content-disposition
        assert Path(item["path"]).read_bytes() == srv.payload(f["id"])


@pytest.mark.parametrize(("model_id", "reason", "words"), [
    (1015, "early_access", "Early Access"), (1018, "html_instead_of_model", "web page"),
    (1012, "gone", "archived"),
])
async def test_civitai_refusals_read_well(make_queue: Any, model_id: int, reason: str, words: str) -> None:
    from tests.fixtures.civitai_server import CivitAIServer

    with CivitAIServer(extra_models=0) as srv:
        vid = srv.model(model_id)["modelVersions"][0]["id"]
        q = make_queue(tokens={"CIVITAI_TOKEN": srv.token}, max_attempts=1)
        [iid] = await q.add(DownloadSpec(f"{srv.base_url}/api/download/models/{vid}",
                                         kind="loras", source="civitai"))
        await q.wait_all(timeout=30)
    item = q.item(iid)
    assert item["state"] == "failed" and item["reason"] == reason, item
    assert words.lower() in item["error"].lower()
    assert not list((q.root.path / "loras").iterdir()), "nothing left behind, partial or final"


async def test_bad_input_is_refused_before_queueing(make_queue: Any) -> None:
    q = make_queue()
    with pytest.raises(ValueError, match="Unknown model kind 'lora'.*loras"):
        await q.add(DownloadSpec("http://127.0.0.1:1/x.bin", kind="lora"))
    with pytest.raises(ValueError, match="only http"):
        await q.add(DownloadSpec("file:///etc/passwd", folder="out"))
    assert q.items() == []
