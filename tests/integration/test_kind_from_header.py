"""A Hugging Face ``model.safetensors`` (or a plain link to one) is filed by what its
header says, read with ranged requests through the Xet bridge (no token there), and a kind
the user picks still wins; the CLI shows the kind and why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdpanel.downloads import DownloadQueue
from sdpanel.runtime import EventBus
from sdpanel.sources import ResolveContext, resolve_link
from tests.fixtures.hf_server import HFServer
from tests.fixtures.safetensors_kinds import HEADERS, safetensors_file
from tests.fixtures.xet_bridge import XetBridge

REPO = "sdpanel-test/tiny-sd15"
FILES = {"model.safetensors": "sdxl_checkpoint", "transformer/diffusion_pytorch_model.safetensors": "flux_transformer",
         "text_encoder/model.safetensors": "clip_l", "vae/diffusion_pytorch_model.safetensors": "vae_sd",
         "adapter_model.safetensors": "lora_flux_diffusers", "controlnet/model.safetensors": "controlnet_diffusers",
         "upscale/model.safetensors": "esrgan_new"}


@pytest.fixture(scope="module")
def hf() -> Iterator[HFServer]:
    with HFServer(xet=XetBridge()) as srv:
        for path, name in FILES.items():
            srv.add_file(REPO, path, safetensors_file(HEADERS[name][2], tag=name.encode()))
        yield srv


@pytest.fixture
async def ctx(hf: HFServer):  # type: ignore[no-untyped-def]
    c = ResolveContext(hf_endpoint=hf.endpoint, hf_token=hf.token)
    yield c
    await c.aclose()


@pytest.mark.parametrize("path", sorted(FILES))
async def test_hf_files_are_filed_by_their_header(hf: HFServer, ctx: ResolveContext, path: str) -> None:
    kind, base, _t = HEADERS[FILES[path]]
    spec = await resolve_link(f"{hf.endpoint}/{REPO}/blob/main/{path}", ctx)
    assert spec.kind == kind, spec.metadata.get("kind_from")
    assert spec.metadata["kind_from"].startswith("safetensors header:")
    if base:
        assert spec.metadata["base_model"] == base
    header_reads = [r for r in hf.requests if r.path.startswith("/xet-bridge/")]
    assert header_reads and all(r.auth is None for r in header_reads)


async def test_user_kind_wins_and_the_file_lands_in_its_folder(hf: HFServer, ctx: ResolveContext,
                                                                tmp_path: Path) -> None:
    picked = await resolve_link(f"{hf.endpoint}/{REPO}/blob/main/model.safetensors", ctx, kind="loras")
    assert picked.kind == "loras"
    spec = await resolve_link(f"{hf.endpoint}/{REPO}/resolve/main/model.safetensors", ctx)
    q = DownloadQueue(tmp_path / "store", EventBus(), engine="python", tokens={"HF_TOKEN": hf.token})
    try:
        [iid] = await q.add(spec)
        await q.wait_all(timeout=60)
        item = q.item(iid)
    finally:
        await q.close()
    assert item["state"] == "done", item
    assert Path(item["path"]).parent == q.root.kind_dir("checkpoints")
    assert Path(item["path"]).read_bytes() == hf.payload(REPO, "model.safetensors")


def test_cli_resolve_shows_the_kind_from_the_header(hf: HFServer, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update({"HF_ENDPOINT": hf.endpoint, "SDPANEL_STORAGE": str(tmp_path)})
    out = subprocess.run([sys.executable, "-m", "sdpanel", "resolve",
                          f"{hf.endpoint}/{REPO}/blob/main/transformer/diffusion_pytorch_model.safetensors", "--json"],
                         capture_output=True, text=True, env=env, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["kind"] == "diffusion_models" and data["metadata"]["base_model"] == "Flux.1"
