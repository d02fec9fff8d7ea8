"""Secrets at rest: signed or token-carrying URLs are never stored verbatim (journal,
``<name>.url.json`` sidecar, aria2's log), a pasted CivitAI ``?token=`` link downloads with
that token (header, API host only) and leaves it nowhere, and the ngrok config holding the
authtoken and the login is gone once ngrok has read it and after ``stop``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdpanel.downloads import DownloadSpec
from sdpanel.sources import ResolveContext, resolve_link
from sdpanel.storage import StorageRoot
from sdpanel.webuis._tunnels import open_tunnel, stop_recorded_tunnels
from tests.fixtures.civitai_server import CivitAIServer
from tests.fixtures.range_server import RangeServer
from tests.fixtures.stub_tunnels import stub_webui_and_tools

ENGINES = ["python"] + (["aria2"] if shutil.which("aria2c") else [])
URL_SECRET = "sdptest-url-secret-7f3e"


def _tree_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture
def server() -> Iterator[RangeServer]:
    with RangeServer(rate=20_000_000) as srv:
        yield srv


@pytest.mark.parametrize("engine", ENGINES)
async def test_signed_url_is_masked_in_journal_sidecar_and_aria2_log(
        server: RangeServer, make_queue: Any, tmp_path: Path, engine: str) -> None:
    data = os.urandom(300_000)
    server.add_file("signed.bin", data)
    url = (server.signed_url("signed.bin") + f"&token={URL_SECRET}&X-Amz-Signature={URL_SECRET}"
           f"&X-Amz-Credential={URL_SECRET}")
    q = make_queue(engine=engine)
    [iid] = await q.add(DownloadSpec(url, folder="out", metadata={"source": "url", "source_url": url}))
    await q.wait_all(timeout=60)
    assert q.item(iid)["state"] == "done", q.item(iid)["error"]
    assert (tmp_path / "store" / "out" / "signed.bin").read_bytes() == data
    sidecar = json.loads((tmp_path / "store" / "out" / "signed.url.json").read_text())
    assert "X-Amz-Signature=***" in sidecar["source_url"]
    assert URL_SECRET.encode() not in _tree_bytes(tmp_path / "store"), "a URL secret was stored"


async def test_restored_signed_link_asks_to_be_pasted_again(server: RangeServer, make_queue: Any) -> None:
    server.add_file("later.bin", os.urandom(1000))
    q1 = make_queue(engine="python")
    [iid] = await q1.add(DownloadSpec(server.signed_url("later.bin") + f"&token={URL_SECRET}", folder="out"))
    await q1.pause(iid)
    await q1.close()
    q2 = make_queue(engine="python")
    await q2.start()
    item = q2.item(iid)
    assert item["state"] == "failed" and "paste the link again" in item["error"]
    assert URL_SECRET not in json.dumps(q2.items())


async def test_pasted_civitai_token_link_downloads_with_that_token(
        make_queue: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIVITAI_TOKEN", raising=False)
    with CivitAIServer() as civ:
        version = civ.model(1013)["modelVersions"][0]  # "Members Only": a login is required
        pasted = f"{civ.base_url}/api/download/models/{version['id']}?token={civ.token}"
        ctx = ResolveContext(civitai_base_url=civ.base_url, civitai_token=None, probe_links=False)
        try:
            spec = await resolve_link(pasted, ctx)
        finally:
            await ctx.aclose()
        assert "token" not in spec.url and civ.token not in json.dumps(spec.to_public_dict())
        q = make_queue(engine="python", tokens={})
        [iid] = await q.add(spec)
        await q.wait_all(timeout=60)
        item = q.item(iid)
        assert item["state"] == "done", item["error"]
        f = version["files"][0]
        assert hashlib.sha256(Path(item["path"]).read_bytes()).hexdigest() == \
            hashlib.sha256(civ.payload(f["id"])).hexdigest()
        storage = [r for r in civ.requests if "/storage/" in r.path]
        assert storage and all(r.auth is None for r in storage), "the token went past the API host"
    assert civ.token.encode() not in _tree_bytes(tmp_path / "store")


async def test_ngrok_config_is_gone_once_read_and_after_stop(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store = StorageRoot.at(tmp_path / "store").ensure()
    async with stub_webui_and_tools(tmp_path, store, monkeypatch) as proc:
        tunnel = await open_tunnel("ngrok", proc.port, storage=store, name="comfyui")
        try:
            assert tunnel.url and not list((store.state_dir / "tunnels").glob("*.yml"))
        finally:
            await tunnel.stop()
        # A config left by a process that died before ngrok read it goes with the next stop.
        left = store.state_path("tunnels", "ngrok-comfyui.yml")
        left.write_text('authtoken: "x"\n')
        stop_recorded_tunnels(store, "comfyui")
        assert not left.exists()
