"""Tokens travel by origin (scheme, host, port), not host name: CivitAI's signed storage URL
may sit on another port of the API's own host, and storage answers a request carrying a
second auth mechanism with 400 "Only one auth mechanism allowed" — which we must name as
such, not as an expired link."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sdpanel.downloads import DownloadError, DownloadSpec, resolve
from sdpanel.downloads._spec import origin
from sdpanel.sources import ResolveContext, resolve_link
from tests.fixtures.civitai_server import CivitAIServer

ENGINES = ["python"] + (["aria2"] if shutil.which("aria2c") else [])
LOGIN_MODEL = 1013  # downloads need a logged-in key


@pytest.fixture(scope="module")
def civ() -> Iterator[CivitAIServer]:
    with CivitAIServer(storage_on_api_host=True) as s:
        yield s


def test_origin_is_scheme_host_and_port() -> None:
    assert origin("https://civitai.com/api") == ("https", "civitai.com", 443)
    assert origin("http://127.0.0.1:8080/x") != origin("http://127.0.0.1:8081/x")
    assert origin("http://Host/a") == origin("http://host:80/b")
    assert origin("https://host/a") != origin("http://host:443/a")


@pytest.mark.parametrize("engine", ENGINES)
async def test_token_stops_at_the_api_port(civ: CivitAIServer, make_queue: Any, engine: str) -> None:
    ctx = ResolveContext(civitai_base_url=civ.base_url, civitai_token=civ.token, probe_links=False)
    try:
        spec = await resolve_link(f"{civ.base_url}/models/{LOGIN_MODEL}", ctx)
    finally:
        await ctx.aclose()
    civ.requests.clear()
    q = make_queue(engine=engine, tokens={"CIVITAI_TOKEN": civ.token})
    [iid] = await q.add(spec)
    await q.wait_all(timeout=60)
    item = q.item(iid)
    assert item["state"] == "done", item
    data = Path(item["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == spec.sha256
    storage_port = civ.extra_ports[1]
    storage = [r for r in civ.requests if r.path.startswith("/storage/")]
    api = civ.requests_to("/api/download/")
    assert storage and all(r.port == storage_port and r.host == "127.0.0.1" for r in storage)
    assert all(r.auth is None for r in storage), "same host, another port: another origin"
    assert api and all(r.auth == f"Bearer {civ.token}" for r in api)


async def test_storage_refusing_a_second_auth_mechanism_is_named(civ: CivitAIServer, make_queue: Any) -> None:
    """A header set for the storage host (here by hand) meets storage's 400: the message
    says so and does not blame an expired link; nothing lands under the model's name."""
    ctx = ResolveContext(civitai_base_url=civ.base_url, civitai_token=civ.token, probe_links=False)
    try:
        spec = await resolve_link(f"{civ.base_url}/models/1003", ctx)
    finally:
        await ctx.aclose()
    async with aiohttp.ClientSession() as s:
        signed = (await resolve(spec, s, {"CIVITAI_TOKEN": civ.token})).url
        bad = DownloadSpec(signed, kind="loras", headers={"127.0.0.1": {"Authorization": "Bearer by-hand"}})
        with pytest.raises(DownloadError) as err:
            await resolve(bad, s)
    msg = err.value.message
    assert err.value.status == 400 and "Only one auth mechanism allowed" in msg
    assert "expired" not in msg.replace("not because the link expired", "")
    q = make_queue(engine="python", tokens={})
    [iid] = await q.add(bad)
    await q.wait_all(timeout=60)
    item = q.item(iid)
    assert item["state"] == "failed" and "Only one auth mechanism allowed" in item["error"]
    assert not any(p.suffix != ".json" for p in (q.root.kind_dir("loras")).glob("*") if p.is_file()) \
        or not (q.root.kind_dir("loras") / spec.filename).exists()  # type: ignore[operator]
