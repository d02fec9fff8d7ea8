"""CivitAIClient against the CivitAI-compatible test server (tests/fixtures/civitai_server)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from sdpanel.sources import (
    ApiUnavailableError,
    AuthRequiredError,
    CivitAIClient,
    NotFoundError,
    RateLimitedError,
    SourceError,
)
from tests.fixtures.civitai_server import CivitAIServer


@pytest.fixture(scope="module")
def srv() -> Iterator[CivitAIServer]:
    with CivitAIServer() as s:
        yield s


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


async def test_search_repeats_types_and_base_models(srv: CivitAIServer) -> None:
    async with CivitAIClient(srv.base_url) as c:
        page = await c.search(types=["LORA", "Checkpoint"], base_models=["SDXL 1.0", "Pony"], limit=100)
    assert page.items, "the filter matches hand-made and filler models"
    for item in page.items:
        assert item["type"] in ("LORA", "Checkpoint")
        assert {v["baseModel"] for v in item["modelVersions"]} & {"SDXL 1.0", "Pony"}
    sent = srv.requests_to("/api/v1/models")[-1].query
    assert "types=LORA&types=Checkpoint" in sent and sent.count("baseModels=") == 2


async def test_cursor_pagination_walks_every_result_once(srv: CivitAIServer) -> None:
    expected = [m["id"] for m in srv.models if not m["nsfw"]]
    seen: list[int] = []
    cursor = None
    async with CivitAIClient(srv.base_url) as c:
        for _ in range(20):
            page = await c.search(limit=10, cursor=cursor, sort="Newest")
            seen += [i["id"] for i in page.items]
            cursor = page.next_cursor
            if cursor is None:
                assert page.next_page is None
                break
            assert page.next_page and "cursor=" in page.next_page
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))


async def test_sort_period_nsfw_tag_username_query(srv: CivitAIServer) -> None:
    async with CivitAIClient(srv.base_url) as c:
        newest = (await c.search(sort="Newest", limit=20)).items
        dates = [i["modelVersions"][0]["publishedAt"] for i in newest]
        assert dates == sorted(dates, reverse=True)
        assert 1011 not in [i["id"] for i in (await c.search(query="spicy")).items]
        assert [i["id"] for i in (await c.search(query="spicy", nsfw=True)).items] == [1011]
        week = (await c.search(period="Week")).items
        assert week and all(i["id"] in (1003, 1005, 1015, 1100) for i in week)
        assert {i["id"] for i in (await c.search(tag="ink")).items} == {1004}
        assert {i["creator"]["username"] for i in (await c.search(username="alice")).items} == {"alice"}
        primary = (await c.search(ids=[1001], primary_file_only=True)).items[0]
        assert all(f.get("primary") for v in primary["modelVersions"] for f in v["files"])
        with pytest.raises(SourceError, match="Unknown sort"):
            await c.search(sort="Best")


async def test_page_rules(srv: CivitAIServer) -> None:
    async with CivitAIClient(srv.base_url) as c:
        assert (await c.search(page=2, limit=5)).items
        with pytest.raises(SourceError, match="cursor"):
            await c.search(query="anime", page=1)
        with pytest.raises(SourceError, match="1000"):
            await c.search(page=11, limit=100)
    # The server itself enforces the documented rules too.
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{srv.base_url}/api/v1/models?page=11&limit=100") as r:
            assert r.status == 429
        async with s.get(f"{srv.base_url}/api/v1/models?page=1&query=anime") as r:
            assert r.status == 400


async def test_favorites_need_a_token_and_are_never_cached(srv: CivitAIServer, tmp_path: Path) -> None:
    async with CivitAIClient(srv.base_url, cache_dir=tmp_path) as anon:
        with pytest.raises(AuthRequiredError, match="CIVITAI_TOKEN"):
            await anon.search(favorites=False)
    async with CivitAIClient(srv.base_url, srv.token, cache_dir=tmp_path) as c:
        before = len(srv.requests_to("/api/v1/models"))
        for _ in range(2):
            assert {i["id"] for i in (await c.search(favorites=True)).items} == srv.favorites
        assert len(srv.requests_to("/api/v1/models")) == before + 2
        assert srv.requests_to("/api/v1/models")[-1].auth == f"Bearer {srv.token}"
    for f in tmp_path.rglob("*.json"):
        assert srv.token not in f.read_text()


async def test_overload_backs_off_honouring_retry_after(srv: CivitAIServer) -> None:
    sleeps = Sleeps()
    async with CivitAIClient(srv.base_url, sleep=sleeps) as c:
        srv.overload_search(2)
        assert (await c.search(limit=3)).items
        assert sleeps.calls == [2.0, 2.0]
        srv.overload_search(10)
        with pytest.raises(RateLimitedError, match="HTTP 503"):
            await c.search(limit=3)
        srv.overload_search(0)
    assert len(sleeps.calls) == 2 + c.max_retries


async def test_model_version_by_hash_images(srv: CivitAIServer) -> None:
    async with CivitAIClient(srv.base_url) as c:
        with pytest.raises(NotFoundError, match="No model with id 424242"):
            await c.model(424242)
        v = await c.version(2002)
        assert v["modelId"] == 1001 and v["model"]["name"] == "Dreamy Realism"
        hashes = srv.file(v["files"][0]["id"])["hashes"]
        for h in (hashes["SHA256"].lower(), hashes["AutoV2"], hashes["CRC32"].lower(), hashes["BLAKE3"]):
            assert (await c.by_hash(h))["id"] == 2002
        with pytest.raises(NotFoundError):
            await c.by_hash("0" * 64)
        with pytest.raises(SourceError, match="not a hex hash"):
            await c.by_hash("../etc")
        assert [i["nsfwLevel"] for i in (await c.images(2001)).items] == [1]  # PG only by default
        imgs = await c.images(2001, limit=1, nsfw=True)
        assert len(imgs.items) == 1 and imgs.next_cursor
        rest = await c.images(2001, limit=1, nsfw=True, cursor=imgs.next_cursor)
        assert rest.items[0]["nsfwLevel"] == 8 and rest.next_cursor is None
        assert (await c.latest_version(1001))["id"] == 2001


async def test_enums_cached_on_disk_without_the_token(srv: CivitAIServer, tmp_path: Path) -> None:
    before = len(srv.requests_to("/api/v1/enums"))
    async with CivitAIClient(srv.base_url, srv.token, cache_dir=tmp_path) as c:
        enums = await c.enums()
        assert "SDXL 1.0" in enums["ActiveBaseModel"]
        await c.enums()
    async with CivitAIClient(srv.base_url, cache_dir=tmp_path) as c2:
        assert await c2.enums() == enums
    assert len(srv.requests_to("/api/v1/enums")) == before + 1
    files = list(tmp_path.rglob("*.json"))
    assert files and all(srv.token not in f.read_text() for f in files)
    async with CivitAIClient(srv.base_url, cache_dir=tmp_path, enums_ttl=0) as c3:
        await c3.enums()
    assert len(srv.requests_to("/api/v1/enums")) == before + 2


async def test_api_down_and_timeout_are_clear_errors() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with CivitAIClient(f"http://127.0.0.1:{port}") as c:
        with pytest.raises(ApiUnavailableError, match="unreachable.*retry"):
            await c.search()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with CivitAIClient(f"http://127.0.0.1:{port}", "secret-token-value-xyz", timeout=0.5) as c:
            with pytest.raises(ApiUnavailableError, match="did not answer") as err:
                await c.model(1)
            assert "secret-token-value-xyz" not in str(err.value)
    finally:
        server.close()


async def test_download_endpoint_follows_the_reference(srv: CivitAIServer) -> None:
    """307 to a signed URL whose path hides the name; the documented error bodies."""
    from urllib.parse import parse_qs, urlsplit

    f = srv.model(1001)["modelVersions"][0]["files"][1]
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{srv.base_url}/api/download/models/2001?fileId={f['id']}",
                         allow_redirects=False) as r:
            assert r.status == 307
            loc = r.headers["Location"]
        parts = urlsplit(loc)
        assert parts.hostname == "localhost" and f["name"] not in parts.path
        assert f["name"] in parse_qs(parts.query)["response-content-disposition"][0]
        async with s.get(loc) as r:
            assert await r.read() == srv.payload(f["id"])
            assert f["name"] in r.headers["Content-Disposition"]
        async with s.get(loc, headers={"Range": "bytes=10-19"}) as r:
            assert r.status == 206 and await r.read() == srv.payload(f["id"])[10:20]
        cases = [
            (3013, {}, 401, "logged in"), (3013, {"Authorization": f"Bearer {srv.token}"}, 307, ""),
            (3013, {"Authorization": "Bearer wrong-key"}, 401, "logged in"),  # bad key = anonymous
            (3014, {}, 401, "disabled downloads"), (3015, {}, 403, "Early Access"),
            (3016, {}, 403, "do not have access"), (3012, {}, 410, "archived"), (999, {}, 404, "File not found"),
        ]
        for vid, headers, status, text in cases:
            async with s.get(f"{srv.base_url}/api/download/models/{vid}", headers=headers,
                             allow_redirects=False) as r:
                assert r.status == status, vid
                assert text in await r.text()
        async with s.get(f"{srv.base_url}/api/download/models/2001?fp=bf16", allow_redirects=False) as r:
            assert r.status == 404, "a type/format/fp mismatch is a 404"
        srv.limit_downloads(1)
        async with s.get(f"{srv.base_url}/api/download/models/2001", allow_redirects=False) as r:
            assert r.status == 429
        srv.expire_signed_urls()
        async with s.get(loc) as r:
            assert r.status == 403
        async with s.get(f"{srv.base_url}/api/download/models/3018") as r:  # the saved-HTML trap
            assert r.headers["Content-Type"].startswith("text/html") and r.url.path.startswith("/storage/")


async def test_nsfw_images_only_with_nsfw(srv: CivitAIServer) -> None:
    async with CivitAIClient(srv.base_url) as c:
        pg = (await c.search(ids=[1001])).items[0]["modelVersions"][0]["images"]
        every = (await c.search(ids=[1001], nsfw=True)).items[0]["modelVersions"][0]["images"]
    assert [i["nsfwLevel"] for i in pg] == [1] and sorted(i["nsfwLevel"] for i in every) == [1, 8]
