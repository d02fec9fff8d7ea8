"""Hugging Face through Xet: ``/resolve/`` → 302 to a signed bridge URL that expires and
403s a multi-connection client part-way. Both engines resolve again from ``/resolve/``
mid-file and on resume, never fetch a finished range twice (bytes served are counted), and
verify against ``X-Linked-Etag`` (the sha256), never ``X-Xet-Hash``."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdpanel.downloads import DownloadQueue
from sdpanel.sources import ResolveContext, resolve_link
from tests.fixtures.hf_server import HFServer
from tests.fixtures.payloads import fake_safetensors
from tests.fixtures.waiting import wait_for
from tests.fixtures.xet_bridge import XetBridge, xet_hash

ENGINES = ["python"] + (["aria2"] if shutil.which("aria2c") else [])
REPO = "sdpanel-test/tiny-sd15"
DATA = fake_safetensors("xet-big", 6 << 20)
SIZE = len(DATA)
# A finished range is never fetched again; what a retry may re-read is the piece a broken
# connection had buffered, and each re-resolve costs aria2 one connection's first chunk.
SLACK = 1 << 20


@pytest.fixture
def hf() -> Iterator[HFServer]:
    # 512 KiB/s per connection: 6 MiB over 4 connections outlives a 0.8 s URL several times.
    bridge = XetBridge(ttl=0.8, requests_per_url=3, rate=512 << 10)
    with HFServer(xet=bridge) as srv:
        srv.add_file(REPO, "big.safetensors", DATA)
        yield srv


async def _spec(hf: HFServer) -> Any:
    ctx = ResolveContext(hf_endpoint=hf.endpoint, hf_token=hf.token)
    try:
        return await resolve_link(f"{hf.endpoint}/{REPO}/resolve/main/big.safetensors", ctx)
    finally:
        await ctx.aclose()


async def test_sha256_is_x_linked_etag_never_x_xet_hash(hf: HFServer) -> None:
    spec = await _spec(hf)
    data = hf.payload(REPO, "big.safetensors")
    assert spec.sha256 == hashlib.sha256(data).hexdigest() != xet_hash(data)
    assert spec.size == SIZE


def _check_served(hf: HFServer, data: bytes, slack: int = 0) -> None:
    """Bytes served ≈ the file once; ``slack``: what was in flight (sent, not yet written)
    when a pause stopped the connections, which a resume must fetch again."""
    sha = hashlib.sha256(data).hexdigest()
    served = hf.xet.bytes_served[sha]  # type: ignore[union-attr]
    assert SIZE <= served <= SIZE + SLACK + max(0, slack), f"{served - SIZE} bytes fetched twice"
    bridge = [r for r in hf.requests if r.path.startswith("/xet-bridge/")]
    assert bridge and all(r.auth is None for r in bridge), "the token stays on the Hub"
    resolves = [r for r in hf.requests if "/resolve/" in r.path]
    assert all(r.auth == f"Bearer {hf.token}" for r in resolves)


@pytest.mark.parametrize("engine", ENGINES)
async def test_expired_and_refused_bridge_urls_are_resolved_again_mid_file(
        hf: HFServer, make_queue: Any, engine: str) -> None:
    spec = await _spec(hf)
    q = make_queue(engine=engine, tokens={"HF_TOKEN": hf.token}, connections=4)
    [iid] = await q.add(spec)
    await q.wait_all(timeout=120)
    item = q.item(iid)
    assert item["state"] == "done", item
    data = hf.payload(REPO, "big.safetensors")
    assert Path(item["path"]).read_bytes() == data
    assert hf.xet.refused, "the bridge refused signed URLs part-way"  # type: ignore[union-attr]
    assert hf.xet.signed_issued >= 3, "resolved again from /resolve/"  # type: ignore[union-attr]
    _check_served(hf, data)


@pytest.mark.parametrize("engine", ENGINES)
async def test_resume_after_the_url_expired_fetches_only_what_is_missing(
        hf: HFServer, make_queue: Any, engine: str) -> None:
    spec = await _spec(hf)
    q = make_queue(engine=engine, tokens={"HF_TOKEN": hf.token}, connections=4)
    [iid] = await q.add(spec)
    sha = spec.sha256
    bridge = hf.xet
    assert bridge is not None
    await asyncio.to_thread(wait_for, lambda: bridge.bytes_served[sha] > SIZE // 3,
                            what="a third served", timeout=60)
    await q.pause(iid)
    served_at_pause = bridge.bytes_served[sha]
    written = _written_ranges(q, iid)
    await asyncio.sleep(1.0)  # every signed URL handed out so far is now expired
    resumed = time.monotonic()
    await q.resume(iid)
    await q.wait_all(timeout=120)
    item = q.item(iid)
    assert item["state"] == "done", item
    data = hf.payload(REPO, "big.safetensors")
    assert Path(item["path"]).read_bytes() == data
    assert served_at_pause < SIZE and hf.xet.signed_issued >= 3  # type: ignore[union-attr]
    if written is not None:
        # Exact for the Python engine: no request after the resume touches a written byte
        # (the 1-byte probe aside).
        after = [(a, b) for t, a, b in bridge.served_ranges if t >= resumed and b > a]
        clash = [(a, b) for a, b in after for s, d in written if a < d and b >= s]
        assert not clash, f"finished bytes fetched again: {clash}"
    _check_served(hf, data, slack=served_at_pause - (sum(d - s for s, d in written) if written else 0))


def _written_ranges(q: DownloadQueue, iid: str) -> list[tuple[int, int]] | None:
    """[start, done) of each segment the Python engine saved (its journal state)."""
    state = q._items[iid].engine_state  # noqa: SLF001 - the saved resume state under test
    segs = state.get("segments") if state.get("engine") == "python" else None
    return [(s, d) for s, _e, d in segs if d > s] if segs else None
