"""CivitAI since its 2026-04 domain split: civitai.com / civitai.green show SFW only,
civitai.red the full catalogue. Links from all three resolve through the configured API (a
mirror included); NSFW-on searches go to the full catalogue, in the client, the panel and
the CLI. The test server plays both halves on two ports (``split_domains=True``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdpanel.sources import CivitAIClient, LinkError, ResolveContext, resolve_link
from sdpanel.sources._civitai import full_catalogue_url
from tests.fixtures.civitai_server import CivitAIServer

NSFW_MODEL = 1011
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def civ() -> Iterator[CivitAIServer]:
    with CivitAIServer(split_domains=True) as s:
        yield s


@pytest.mark.parametrize("host", ["civitai.com", "www.civitai.com", "civitai.green", "civitai.red",
                                  "www.civitai.red"])
async def test_links_from_every_civitai_domain_resolve_through_the_mirror(civ: CivitAIServer, host: str) -> None:
    ctx = ResolveContext(civitai_base_url=civ.base_url, civitai_token=civ.token, probe_links=False)
    try:
        page = await resolve_link(f"https://{host}/models/1001/dreamy?modelVersionId=2002", ctx)
        dl = await resolve_link(f"https://{host}/api/download/models/2001?type=VAE", ctx)
        nsfw = await resolve_link(f"https://{host}/models/{NSFW_MODEL}", ctx)
    finally:
        await ctx.aclose()
    # Every request went to the configured base URL (the mirror), never the pasted host.
    assert page.url == f"{civ.base_url}/api/download/models/2002"
    assert dl.filename == civ.model(1001)["modelVersions"][0]["files"][2]["name"]
    assert nsfw.metadata["model_id"] == NSFW_MODEL and nsfw.metadata["nsfw"] is True


async def test_air_and_a_bad_red_link(civ: CivitAIServer) -> None:
    ctx = ResolveContext(civitai_base_url=civ.base_url, probe_links=False)
    try:
        spec = await resolve_link(f"urn:air:sdxl:lora:civitai:{NSFW_MODEL}@{civ.model(NSFW_MODEL)['modelVersions'][0]['id']}", ctx)
        assert spec.metadata["model_id"] == NSFW_MODEL
        with pytest.raises(LinkError, match="not a model page"):
            await resolve_link("https://civitai.red/user/mallory", ctx)
    finally:
        await ctx.aclose()


def test_full_catalogue_is_civitai_red_unless_a_mirror_is_set() -> None:
    assert full_catalogue_url("https://civitai.com") == "https://civitai.red"
    assert full_catalogue_url("https://civitai.green/") == "https://civitai.red"
    assert full_catalogue_url("https://civitai.red") == "https://civitai.red"
    assert full_catalogue_url("https://mirror.example:8443/") == "https://mirror.example:8443"


async def test_nsfw_search_goes_to_the_full_catalogue(civ: CivitAIServer) -> None:
    sfw_only = CivitAIClient(civ.base_url, full_catalogue=civ.base_url)  # what we did before
    split = CivitAIClient(civ.base_url, full_catalogue=civ.red_url)
    try:
        before = await sfw_only.search("spicy", nsfw=True)
        after = await split.search("spicy", nsfw=True)
        sfw = await split.search("spicy")
        images = await split.images(civ.model(1001)["modelVersions"][0]["id"], nsfw=True)
    finally:
        await sfw_only.close()
        await split.close()
    assert [m["id"] for m in before.items] == [], "civitai.com hides NSFW models since the split"
    assert [m["id"] for m in after.items] == [NSFW_MODEL]
    assert sfw.items == [], "NSFW off stays on the SFW host and sees no NSFW model"
    assert any(i["nsfwLevel"] > 1 for i in images.items)
    red_port = civ.extra_ports[0]
    searches = civ.requests_to("/api/v1/models")
    assert {r.port for r in searches if "nsfw=true" in r.query} >= {red_port}
    assert all(r.port != red_port for r in searches if "nsfw=true" not in r.query)


def _cli(args: list[str], civ: CivitAIServer, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CIVITAI_TOKEN",)}
    env.update({"SDPANEL_CIVITAI_BASE_URL": civ.base_url, "SDPANEL_STORAGE": str(tmp_path),
                "SDPANEL_CIVITAI_FULL_CATALOGUE_URL": civ.red_url})
    return subprocess.run([sys.executable, "-m", "sdpanel", *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=REPO)


def test_cli_search_with_nsfw_lists_the_full_catalogue_and_resolves_red_links(
        civ: CivitAIServer, tmp_path: Path) -> None:
    out = _cli(["search", "spicy", "--nsfw", "--json"], civ, tmp_path)
    assert out.returncode == 0, out.stderr
    assert [r["id"] for r in json.loads(out.stdout)["items"]] == [NSFW_MODEL]
    off = _cli(["search", "spicy", "--json"], civ, tmp_path)
    assert json.loads(off.stdout)["items"] == []
    red = _cli(["resolve", f"https://civitai.red/models/{NSFW_MODEL}", "--json"], civ, tmp_path)
    assert red.returncode == 0, red.stderr
    assert json.loads(red.stdout)["metadata"]["model_id"] == NSFW_MODEL
