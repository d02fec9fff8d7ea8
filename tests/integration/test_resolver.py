"""resolve_link against both test servers: every link form, the pinned file, and the
bytes at the end of the resolved spec (through the downloads service's redirect resolver)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from sdpanel.downloads import DownloadSpec, resolve
from sdpanel.sources import (
    LinkError,
    NotFoundError,
    ResolveContext,
    resolve_link,
    resolve_link_sync,
)
from tests.fixtures.civitai_server import CivitAIServer
from tests.fixtures.hf_server import HFServer


@pytest.fixture(scope="module")
def civ() -> Iterator[CivitAIServer]:
    with CivitAIServer() as s:
        yield s


@pytest.fixture(scope="module")
def hf() -> Iterator[HFServer]:
    with HFServer() as s:
        yield s


@pytest.fixture
async def ctx(civ: CivitAIServer, hf: HFServer):  # type: ignore[no-untyped-def]
    c = ResolveContext(civitai_base_url=civ.base_url, hf_endpoint=hf.endpoint,
                       civitai_token=civ.token, hf_token=hf.token)
    yield c
    await c.aclose()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_model_page_pins_the_primary_file_of_the_latest_version(civ: CivitAIServer, ctx: ResolveContext) -> None:
    spec = await resolve_link(f"{civ.base_url}/models/1001/dreamy-realism", ctx)
    f = civ.model(1001)["modelVersions"][0]["files"][0]
    assert spec.url == f"{civ.base_url}/api/download/models/2001"
    assert (spec.kind, spec.filename, spec.source) == ("checkpoints", f["name"], "civitai")
    assert spec.size == len(civ.payload(f["id"])) and spec.sha256 == sha(civ.payload(f["id"]))
    m = spec.metadata
    assert (m["model_id"], m["version_id"], m["base_model"], m["creator"]) == (1001, 2001, "SD 1.5", "alice")
    assert m["source_url"].endswith("/models/1001?modelVersionId=2001")
    assert m["preview_url"].endswith(".png") and m["model_name"] == "Dreamy Realism"
    assert spec.headers == {"127.0.0.1": {"Authorization": f"Bearer {civ.token}"}}


async def test_model_page_with_version_and_air(civ: CivitAIServer, ctx: ResolveContext) -> None:
    old = await resolve_link(f"{civ.base_url}/models/1001/dreamy?modelVersionId=2002", ctx)
    assert old.metadata["version_id"] == 2002 and old.url.endswith("/api/download/models/2002")
    lora = await resolve_link("urn:air:sdxl:lora:civitai:1002@3002", ctx)
    assert (lora.kind, lora.metadata["trained_words"][0]) == ("loras", "anime")
    latest = await resolve_link("urn:air:sd1:checkpoint:civitai:1001", ctx)
    assert latest.metadata["version_id"] == 2001
    emb = await resolve_link("https://civitai.com/models/1006", ctx)  # the public host maps to our API
    assert emb.kind == "embeddings" and emb.url.startswith(civ.base_url)


async def test_download_url_pins_non_primary_files_by_id(civ: CivitAIServer, ctx: ResolveContext) -> None:
    files = civ.model(1001)["modelVersions"][0]["files"]
    pruned, vae = files[1], files[2]
    spec = await resolve_link(f"{civ.base_url}/api/download/models/2001?fileId={pruned['id']}", ctx)
    assert spec.url == f"{civ.base_url}/api/download/models/2001?fileId={pruned['id']}"
    assert spec.filename == pruned["name"] and spec.metadata["fp"] == "fp16"
    by_type = await resolve_link(f"{civ.base_url}/api/download/models/2001?type=VAE", ctx)
    assert by_type.url.endswith(f"fileId={vae['id']}") and by_type.kind == "vae"
    plain = await resolve_link(f"{civ.base_url}/api/download/models/2001", ctx)
    assert "fileId" not in plain.url and plain.filename == files[0]["name"]
    with pytest.raises(LinkError, match="file the version does not have"):
        await resolve_link(f"{civ.base_url}/api/download/models/2001?fileId=1", ctx)


async def test_hugging_face_forms(hf: HFServer, ctx: ResolveContext) -> None:
    repo, path = "sdpanel-test/tiny-sd15", "vae/tiny-vae.safetensors"
    want = hf.sha256(repo, path)
    for text in (f"{hf.endpoint}/{repo}/blob/main/{path}", f"{hf.endpoint}/{repo}/resolve/main/{path}",
                 f"https://huggingface.co/{repo}/blob/main/{path}", f"{repo}/{path}", f"hf://{repo}/{path}"):
        spec = await resolve_link(text, ctx)
        assert spec.sha256 == want, text
        assert spec.url == f"{hf.endpoint}/{repo}/resolve/main/{path}"
        assert (spec.kind, spec.filename, spec.source) == ("vae", "tiny-vae.safetensors", "huggingface")
        assert spec.metadata["commit"] == hf.commit(repo)
        assert spec.headers == {"127.0.0.1": {"Authorization": f"Bearer {hf.token}"}}
    det = await resolve_link(f"{hf.endpoint}/sdpanel-test/adetailer/resolve/main/face_yolov8n.pt", ctx)
    assert det.kind == "adetailer"
    data = await resolve_link(f"{hf.endpoint}/datasets/sdpanel-test/tiny-data/resolve/main/data.bin", ctx)
    assert data.sha256 == hf.sha256("sdpanel-test/tiny-data", "data.bin", "dataset")


async def test_github_and_plain_links(civ: CivitAIServer, ctx: ResolveContext) -> None:
    ctx.probe_links = False  # github.com is not reachable from the tests
    gh = await resolve_link("https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth", ctx)
    assert (gh.source, gh.filename, gh.kind) == ("github", "RealESRGAN_x4plus.pth", "upscalers")
    ctx.probe_links = True
    plain = await resolve_link(f"{civ.storage_url}/img/7.png", ctx, kind="other")
    assert (plain.source, plain.filename, plain.size, plain.kind) == ("url", "7.png", len(
        __import__("tests.fixtures.civitai_server", fromlist=["tiny_png"]).tiny_png(7, checker=True)), "other")


@pytest.mark.parametrize("text", [
    "", "   ", "hello world", "ftp://example.com/model.safetensors", "file:///etc/passwd",
    "urn:air:sdxl:lora:civitai:abc@1", "urn:air:sdxl:lora:huggingface:owner/repo", "urn:air:broken",
    "https://civitai.com/user/bob", "https://huggingface.co/sdpanel-test/tiny-sd15",
    "https://huggingface.co/sdpanel-test/tiny-sd15/tree/main", "https://github.com/owner/repo",
    "hf://only-a-repo", "https://civitai.com/models/1001?modelVersionId=abc", "preset:no-such-preset",
])
async def test_bad_input_gets_a_one_line_reason(text: str, ctx: ResolveContext) -> None:
    with pytest.raises(LinkError) as err:
        await resolve_link(text, ctx)
    assert str(err.value) and "\n" not in str(err.value)


async def test_missing_and_archived_models(civ: CivitAIServer, ctx: ResolveContext) -> None:
    with pytest.raises(NotFoundError, match="No model with id 999999"):
        await resolve_link(f"{civ.base_url}/models/999999", ctx)
    with pytest.raises(LinkError, match="archived"):
        await resolve_link(f"{civ.base_url}/models/1012", ctx)


async def test_resolved_spec_leads_to_the_right_bytes_without_leaking_the_token(
        civ: CivitAIServer, hf: HFServer, ctx: ResolveContext) -> None:
    """End to end: spec → the downloads service's redirect resolver → signed URL → bytes."""
    vae = civ.model(1001)["modelVersions"][0]["files"][2]
    civ_spec = await resolve_link(f"{civ.base_url}/api/download/models/2001?type=VAE", ctx)
    hf_spec = await resolve_link(f"{hf.endpoint}/sdpanel-test/upscalers/blob/main/4x-Tiny.pth", ctx)
    async with aiohttp.ClientSession() as s:
        for spec in (civ_spec, hf_spec):
            r = await resolve(spec, s)
            assert "localhost" in r.url and not r.headers, "the token stays on the API host"
            async with s.get(r.url) as resp:
                body = await resp.read()
            assert sha(body) == spec.sha256 and len(body) == spec.size
    assert r.filename in (None, "4x-Tiny.pth")
    storage = [q for q in civ.requests_to("/storage/")] + hf.requests_to("/cdn/")
    assert storage and all(q.auth is None for q in storage)
    assert civ_spec.filename == vae["name"]


def test_sync_wrapper_and_presets(civ: CivitAIServer, hf: HFServer) -> None:
    ctx = ResolveContext(civitai_base_url=civ.base_url, hf_endpoint=hf.endpoint)
    spec = resolve_link_sync(f"{civ.base_url}/models/1003", ctx)
    assert isinstance(spec, DownloadSpec) and spec.kind == "loras" and spec.headers == {}
    preset = resolve_link_sync("preset:sdxl-base-1.0", ctx)
    assert preset.url == f"{hf.endpoint}/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors"
    assert preset.sha256 == "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b"


def _cli(args: list[str], civ: CivitAIServer, hf: HFServer, tmp_path: Path,
         token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CIVITAI_TOKEN", "HF_TOKEN")}
    env.update({"SDPANEL_CIVITAI_BASE_URL": civ.base_url, "HF_ENDPOINT": hf.endpoint,
                "SDPANEL_STORAGE": str(tmp_path)})
    if token:
        env["CIVITAI_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "sdpanel", *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=Path(__file__).resolve().parents[2])


def test_cli_search_and_resolve(civ: CivitAIServer, hf: HFServer, tmp_path: Path) -> None:
    out = _cli(["search", "#anime", "--type", "LORA", "--base", "SDXL 1.0", "--json"], civ, hf, tmp_path)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["items"]
    assert [r["id"] for r in rows] == [1002] and rows[0]["base_model"] == "SDXL 1.0"
    assert list((tmp_path / ".sdpanel" / "cache" / "civitai").rglob("*.json")), "answers are cached"
    text = _cli(["search", "filler", "--limit", "3", "--sort", "Newest"], civ, hf, tmp_path)
    assert text.returncode == 0 and "more: sdpanel search" in text.stdout and len(text.stdout.splitlines()) == 4
    spec = _cli(["resolve", f"{civ.base_url}/models/1005", "--json"], civ, hf, tmp_path, token=civ.token)
    assert spec.returncode == 0, spec.stderr
    data = json.loads(spec.stdout)
    assert data["kind"] == "loras" and data["headers"] == {"127.0.0.1": ["Authorization"]}
    assert civ.token not in spec.stdout
    bad = _cli(["resolve", "urn:air:sdxl:lora:civitai:x@y"], civ, hf, tmp_path)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
    missing = _cli(["resolve", f"{civ.base_url}/models/999999"], civ, hf, tmp_path)
    assert missing.returncode == 1 and "No model with id 999999" in missing.stderr


async def test_resolved_spec_downloads_through_the_queue_with_sidecar_and_preview(
        civ: CivitAIServer, ctx: ResolveContext, tmp_path: Path) -> None:
    from sdpanel.downloads import DownloadQueue
    from sdpanel.sources import complete_sidecars, read_sidecar
    from sdpanel.storage import StorageRoot

    root = StorageRoot.at(tmp_path / "store").ensure()
    spec = await resolve_link("urn:air:flux1:lora:civitai:1005@3005", ctx)
    queue = DownloadQueue(root, max_concurrent=1, engine="python")
    try:
        [item_id] = await queue.add(spec)
        await queue.wait_all()
        item = queue.item(item_id)
    finally:
        await queue.close()
    assert item["state"] == "done", item["error"]
    path = Path(item["path"])
    assert path.parent == root.kind_dir("loras") and path.name == spec.filename
    assert sha(path.read_bytes()) == spec.sha256
    _side, preview = await complete_sidecars(path, spec)
    meta = read_sidecar(path)
    assert meta is not None and (meta["model_id"], meta["version_id"], meta["base_model"]) == (1005, 3005, "Flux.1 D")
    assert meta["trained_words"] == ["flux", "masterpiece"] and meta["sha256"] == spec.sha256
    assert preview is not None and preview.name == f"{path.stem}.preview.png"


async def test_a_link_without_its_scheme_resolves(civ: CivitAIServer, ctx: ResolveContext) -> None:
    """`sdpanel resolve civitai.com/models/123`: what an address bar copy often lacks."""
    bare = civ.base_url.split("://", 1)[1]
    spec = await resolve_link(f"{bare}/models/1001/dreamy-realism", ctx)
    full = await resolve_link(f"{civ.base_url}/models/1001/dreamy-realism", ctx)
    assert spec.url == full.url and spec.filename == full.filename
    with pytest.raises(LinkError, match="Not a link"):
        await resolve_link("example.invalid/models/1001", ctx)  # an unknown host stays refused
