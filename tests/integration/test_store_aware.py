"""The store-aware downloads StabilityMatrix and Civitai Browser Neo users ask for, through
the CLI and the queue against the CivitAI test server: a second copy is refused (link
instead), a file replaced upstream is asked about before it is called corrupt, updates of
installed models, every version at once by file preference, hidden creators and models."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdpanel.downloads import DownloadQueue
from sdpanel.runtime import EventBus
from sdpanel.sources import ResolveContext, resolve_link
from tests.fixtures.civitai_server import CivitAIServer

REPO = Path(__file__).resolve().parents[2]
LORA = 1003  # Pony Style Pack, one file


@pytest.fixture
def civ() -> Iterator[CivitAIServer]:
    with CivitAIServer() as s:
        yield s


def cli(civ: CivitAIServer, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CIVITAI_TOKEN",)}
    env.update({"SDPANEL_CIVITAI_BASE_URL": civ.base_url, "SDPANEL_DOWNLOAD_ENGINE": "python"})
    return subprocess.run([sys.executable, "-m", "sdpanel", *args, "--storage", str(store)],
                          capture_output=True, text=True, env=env, timeout=180, cwd=REPO)


def storage_hits(civ: CivitAIServer) -> int:
    return len(civ.requests_to("/storage/"))


def test_a_second_copy_is_refused_and_can_be_linked_instead(civ: CivitAIServer, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = cli(civ, store, "download", f"{civ.base_url}/models/{LORA}")
    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.split()[0])
    renamed = path.with_name("my-favourite-style.safetensors")  # the user renamed it
    path.rename(renamed)
    before = storage_hits(civ)
    again = cli(civ, store, "download", f"https://civitai.com/models/{LORA}")
    assert again.returncode == 0, again.stderr
    assert "already in the store" in again.stdout and "loras/my-favourite-style.safetensors" in again.stdout
    assert "same sha256" in again.stdout and storage_hits(civ) == before, "nothing downloaded"
    assert not path.exists()
    linked = cli(civ, store, "download", f"{civ.base_url}/models/{LORA}", "--link")
    assert linked.returncode == 0, linked.stderr
    assert path.exists() and os.path.samefile(path, renamed), "a link, not a second copy"
    assert storage_hits(civ) == before
    forced = cli(civ, store, "download", f"{civ.base_url}/models/{LORA}", "--force", "--kind", "other")
    assert forced.returncode == 0 and storage_hits(civ) > before


def test_same_civitai_version_with_other_bytes_is_named(civ: CivitAIServer, tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert cli(civ, store, "download", f"{civ.base_url}/models/{LORA}").returncode == 0
    file_id = civ.model(LORA)["modelVersions"][0]["files"][0]["id"]
    old = civ.payload(file_id)
    civ.replace_file(file_id, old[:-64] + b"\x01" * 64)  # the author re-uploaded it
    shutil.rmtree(store / ".sdpanel" / "cache")  # API answers are cached for 10 minutes
    again = cli(civ, store, "download", f"{civ.base_url}/models/{LORA}", "--kind", "other")
    assert again.returncode == 0, again.stderr
    assert "same CivitAI version" in again.stdout


async def test_a_file_replaced_upstream_is_kept_when_the_api_now_publishes_its_hash(
        civ: CivitAIServer, tmp_path: Path) -> None:
    ctx = ResolveContext(civitai_base_url=civ.base_url, probe_links=False)
    try:
        spec = await resolve_link(f"{civ.base_url}/models/{LORA}", ctx)
        corrupt = await resolve_link(f"{civ.base_url}/models/1002", ctx)
    finally:
        await ctx.aclose()
    file_id = int(spec.metadata["file_id"])
    old = civ.payload(file_id)
    new = old[:-64] + b"\x02" * 64
    civ.replace_file(file_id, new)  # after the spec was resolved: the spec holds the old hash
    # 1002's bytes go bad in transit/storage; CivitAI still publishes the old hash.
    bad_id = int(corrupt.metadata["file_id"])
    civ._payloads[bad_id] = civ.payload(bad_id)[:-8] + b"\x00" * 8
    q = DownloadQueue(tmp_path / "store", EventBus(), engine="python", retry_backoff=0.05)
    try:
        ids = await q.add([spec, corrupt])
        await q.wait_all(timeout=60)
        kept, bad = q.item(ids[0]), q.item(ids[1])
    finally:
        await q.close()
    assert kept["state"] == "done", kept
    assert Path(kept["path"]).read_bytes() == new and kept["sha256"] == hashlib.sha256(new).hexdigest()
    side = json.loads(Path(kept["path"]).with_suffix(".civitai.json").read_text())
    assert side["sha256"] == hashlib.sha256(new).hexdigest()
    assert side["sha256_replaced"] == hashlib.sha256(old).hexdigest()
    assert bad["state"] == "failed" and bad["reason"] == "checksum"
    assert "still publishes that hash" in bad["error"] and "corrupt" in bad["error"]
    assert not list((tmp_path / "store" / "loras").glob("AnimeLineart*"))
    asked = [r for r in civ.requests_to("/api/v1/model-versions/") if r.path.endswith(str(spec.metadata["version_id"]))]
    assert asked, "the API was asked again"


def test_updates_and_every_version_by_preference(civ: CivitAIServer, tmp_path: Path) -> None:
    store = tmp_path / "store"
    old = cli(civ, store, "download", f"{civ.base_url}/models/1001?modelVersionId=2002")
    assert old.returncode == 0, old.stderr
    upd = cli(civ, store, "updates", "--json")
    assert upd.returncode == 0, upd.stderr
    [row] = json.loads(upd.stdout)
    assert (row["model_id"], row["version_id"], row["latest_version_id"]) == (1001, 2002, 2001)
    text = cli(civ, store, "updates")
    assert "v1.0 → v2.0" in text.stdout
    v1_file = civ.model(1001)["modelVersions"][1]["files"][0]["id"]

    def v1_fetches() -> int:
        return sum(1 for r in civ.requests_to("/storage/") if f"{v1_file}-" in r.path)

    fetched = v1_fetches()
    bulk = cli(civ, store, "download", f"{civ.base_url}/models/1001", "--all-versions", "--prefer", "fp16,pruned")
    assert bulk.returncode == 0, bulk.stderr
    names = {f["name"] for v in civ.model(1001)["modelVersions"] for f in v["files"]}
    got = {Path(line.split()[0]).name for line in bulk.stdout.splitlines() if line.startswith("/")}
    pruned = next(f["name"] for f in civ.model(1001)["modelVersions"][0]["files"] if f["type"] == "Pruned Model")
    assert pruned in got and got <= names and not any("_vae" in n for n in got)
    assert v1_fetches() == fetched, "the installed v1 is not fetched twice"
    full = cli(civ, store, "download", f"{civ.base_url}/models/1001", "--all-versions", "--prefer", "fp32,full")
    assert full.returncode == 0 and "DreamyRealism_v2.safetensors" in full.stdout
    assert cli(civ, store, "download", f"{civ.base_url}/models/1001", "--all-versions",
               "--prefer", "int4").returncode == 1


def test_hidden_creators_and_models_stay_hidden_across_sessions(civ: CivitAIServer, tmp_path: Path) -> None:
    store = tmp_path / "store"

    def ids(*args: str) -> set[int]:
        out = cli(civ, store, "search", *args, "--json", "--limit", "100")
        assert out.returncode == 0, out.stderr
        return {r["id"] for r in json.loads(out.stdout)["items"]}

    assert {1001, 1005, 1003} <= ids("portrait") | ids("style")
    assert cli(civ, store, "hide", "--creator", "@Alice").returncode == 0
    assert cli(civ, store, "hide", "--model", str(LORA)).returncode == 0
    assert not {1001, 1005} & ids("portrait") and LORA not in ids("style")
    listed = cli(civ, store, "hide", "--list")
    assert "creator @alice" in listed.stdout and f"model {LORA}" in listed.stdout
    assert cli(civ, store, "hide", "--undo").returncode == 0
    assert {1001, 1005} <= ids("portrait")


@pytest.mark.parametrize("engine", ["python"] + (["aria2"] if shutil.which("aria2c") else []))
async def test_a_file_replaced_upstream_with_another_size_is_fetched_anew(
        civ: CivitAIServer, tmp_path: Path, engine: str) -> None:
    """Replaced files usually change size: the size check asks the API again too, and the
    download retries with the size and hash the API publishes now."""
    ctx = ResolveContext(civitai_base_url=civ.base_url, probe_links=False)
    try:
        spec = await resolve_link(f"{civ.base_url}/models/{LORA}", ctx)
    finally:
        await ctx.aclose()
    file_id = int(spec.metadata["file_id"])
    new = civ.payload(file_id) + b"\x03" * 3000
    civ.replace_file(file_id, new)
    q = DownloadQueue(tmp_path / "store", EventBus(), engine=engine, retry_backoff=0.05)
    try:
        [iid] = await q.add(spec)
        await q.wait_all(timeout=60)
        item = q.item(iid)
    finally:
        await q.close(stop_idle_daemon=True)
    assert item["state"] == "done", item
    assert Path(item["path"]).read_bytes() == new
    side = json.loads(Path(item["path"]).with_suffix(".civitai.json").read_text())
    assert side["sha256"] == hashlib.sha256(new).hexdigest() and side["size_replaced"] == len(new) - 3000
