"""Tokens reach the API host only — never the storage host the API redirects to — and
appear in no URL, log, journal, event, file or command output."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sdpanel.downloads import DownloadError, DownloadQueue, DownloadSpec, resolve
from sdpanel.runtime import Event, EventBus
from tests.fixtures.range_server import RangeServer

TOKEN = "civitai-test-token-3f9c2a77d1"
HF = "hf_TestTokenValue1234567890abcd"
ENGINES = ["python"] + (["aria2"] if shutil.which("aria2c") else [])
REPO = Path(__file__).resolve().parents[2]


def blob(n: int) -> bytes:
    return (hashlib.sha256(b"tok").digest() * (n // 32 + 1))[:n]


@pytest.fixture
def server() -> Iterator[RangeServer]:
    # /redirect/ on 127.0.0.1 plays the API host; it answers 307 to /signed/ on localhost
    # (the storage host) and wants the bearer token.
    with RangeServer(rate=20_000_000, require_token=TOKEN) as srv:
        yield srv


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[tuple[DownloadQueue, list[Event]]]:
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    qs: list[DownloadQueue] = []

    def make(**kw: Any) -> DownloadQueue:
        q = DownloadQueue(tmp_path / "store", bus, retry_backoff=0.05, **kw)
        qs.append(q)
        return q

    yield make, events  # type: ignore[misc]
    for q in qs:
        await q.close()
    if shutil.which("aria2c"):
        from sdpanel.downloads import Aria2Daemon

        await Aria2Daemon(tmp_path / "store").shutdown(grace=0.2)


def _tree_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("engine", ENGINES)
async def test_token_goes_to_api_host_only(server: RangeServer, queue: Any, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                           engine: str) -> None:
    monkeypatch.setenv("CIVITAI_TOKEN", TOKEN)
    data = blob(2 * 1024 * 1024 + 5)
    server.add_file("model.bin", data, content_disposition='attachment; filename="model.bin"')
    make, events = queue
    q = make(engine=engine)
    [iid] = await q.add(DownloadSpec(server.redirect_url("model.bin"), kind="loras", source="civitai",
                                     size=len(data), sha256=hashlib.sha256(data).hexdigest()))
    await q.wait_all(timeout=30)
    assert q.item(iid)["state"] == "done", q.item(iid)
    api = server.requests("/redirect/")
    storage = server.requests("/signed/")
    assert api and storage
    assert all(r["host"] == "127.0.0.1" for r in api) and all(r["host"] == "localhost" for r in storage)
    assert all(r["headers"].get("Authorization") == f"Bearer {TOKEN}" for r in api)
    for r in storage:
        assert "Authorization" not in r["headers"]
        assert TOKEN not in repr(r), "the token must not reach the storage host in any form"
    assert all("token" not in r["path"] for r in server.requests())
    # Nowhere on disk (journal, aria2 control file and log, sidecars), in no event, no output.
    assert TOKEN.encode() not in _tree_bytes(tmp_path)
    assert all(TOKEN not in repr(e) for e in events)
    assert TOKEN not in repr(q.items())
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err


async def test_missing_token_names_the_setting(server: RangeServer, queue: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIVITAI_TOKEN", raising=False)
    server.add_file("gated.bin", blob(1000))
    make, events = queue
    q = make(engine="python", tokens={})
    [iid] = await q.add(DownloadSpec(server.redirect_url("gated.bin"), source="civitai", folder="out"))
    await q.wait_all(timeout=30)
    item = q.item(iid)
    assert item["state"] == "failed" and item["reason"] == "auth"
    assert "CIVITAI_TOKEN" in item["error"] and "Settings" in item["error"]
    assert not server.requests("/signed/")


async def test_resolve_drops_token_on_cross_host_redirect(server: RangeServer) -> None:
    server.add_file("x.bin", blob(10), content_disposition="attachment; filename*=UTF-8''na%C3%AFve.bin")
    spec = DownloadSpec(server.redirect_url("x.bin"), source="civitai")
    async with aiohttp.ClientSession() as session:
        got = await resolve(spec, session, {"CIVITAI_TOKEN": TOKEN})
        assert got.url.startswith(f"http://localhost:{server.port}/signed/")
        assert got.headers == {} and TOKEN not in got.url
        assert got.filename == "naïve.bin"
        with pytest.raises(DownloadError) as err:
            await resolve(spec, session, {"CIVITAI_TOKEN": "wrong-token-value"})
        assert err.value.reason == "auth"


async def test_hf_token_only_to_hub(queue: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_TOKEN", HF)
    data = blob(300_000)
    with RangeServer(rate=20_000_000, require_token=HF) as srv:
        srv.add_file("unet.bin", data)
        make, events = queue
        q = make(engine="python")
        [iid] = await q.add(DownloadSpec(srv.redirect_url("unet.bin"), source="huggingface", folder="out"))
        await q.wait_all(timeout=30)
        assert q.item(iid)["state"] == "done"
        assert all(r["headers"].get("Authorization") == f"Bearer {HF}" for r in srv.requests("/redirect/"))
        assert all("Authorization" not in r["headers"] for r in srv.requests("/signed/"))
    assert HF.encode() not in _tree_bytes(tmp_path)


def test_cli_civitai_download_token_on_api_host_only(tmp_path: Path) -> None:
    """End to end through ``sdpanel download``: a login-only CivitAI model (1013) via the
    CivitAI-compatible server; the token goes to the API host (127.0.0.1) only."""
    from tests.fixtures.civitai_server import CivitAIServer

    with CivitAIServer(extra_models=0) as srv:
        token = srv.token
        env = {**os.environ, "CIVITAI_TOKEN": token, "SDPANEL_CIVITAI_BASE_URL": srv.base_url}
        url = f"{srv.base_url}/api/download/models/3013"
        ok = subprocess.run([sys.executable, "-m", "sdpanel", "download", url, "--engine", "python",
                             "--storage", str(tmp_path / "store")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert token not in ok.stdout + ok.stderr
        assert ok.returncode == 0, ok.stderr
        path = Path(ok.stdout.split("  ")[0])
        assert path.is_file() and path.parent.parent == tmp_path / "store"
        storage = [r for r in srv.requests if r.path.startswith("/storage/")]
        api = [r for r in srv.requests if r.path.startswith("/api/")]
        assert storage and all(r.host.startswith("localhost") and r.auth is None for r in storage)
        assert api and all(r.host.startswith("127.0.0.1") for r in api)
        assert all(r.auth == f"Bearer {token}" for r in api if r.path.startswith("/api/download/"))
        assert all(token not in r.query for r in srv.requests)
        # Without the token: one line naming the setting, exit 1, nothing under a final name.
        env.pop("CIVITAI_TOKEN")
        bad = subprocess.run([sys.executable, "-m", "sdpanel", "download", url, "--engine", "python",
                              "--storage", str(tmp_path / "store2")],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1
        assert len(bad.stderr.strip().splitlines()) == 1 and "CIVITAI_TOKEN" in bad.stderr, bad.stderr
    assert token.encode() not in _tree_bytes(tmp_path)


async def test_journal_keeps_header_names_only_and_restore_resolves_again(
        server: RangeServer, queue: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A spec from the sources carries the token in its headers; the journal stores only the
    header's name, and a restored queue (new kernel) gets the token from the secret store."""
    data = blob(3 * 1024 * 1024)
    with RangeServer(rate=600_000, require_token=TOKEN) as slow:
        slow.add_file("r.bin", data)
        make, _events = queue
        q1 = make(engine="python", connections=2, tokens={})
        spec = DownloadSpec(slow.redirect_url("r.bin"), source="civitai", folder="out",
                            headers={"127.0.0.1": {"Authorization": f"Bearer {TOKEN}"}})
        [iid] = await q1.add(spec)
        await asyncio.sleep(0.8)
        await q1.close()
        text = (tmp_path / "store" / ".sdpanel" / "journals" / "downloads.json").read_text()
        assert TOKEN not in text and "Authorization" in text
        monkeypatch.setenv("CIVITAI_TOKEN", TOKEN)
        q2 = make(engine="python", connections=2)
        await q2.restore()
        [item] = await q2.wait([iid], timeout=30)
        assert item["state"] == "done", item
        assert Path(item["path"]).read_bytes() == data
        assert all(r["headers"].get("Authorization") == f"Bearer {TOKEN}" for r in slow.requests("/redirect/"))
    assert TOKEN.encode() not in _tree_bytes(tmp_path)
