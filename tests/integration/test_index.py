"""LocalIndex on a real store: installed detection, hashing once, update detection and
by-hash identification against the CivitAI-compatible server."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import sdpanel.storage._index as content_index
from sdpanel.sources import (
    CivitAIClient,
    LocalIndex,
    find_sidecar,
    read_sidecar,
    write_model_sidecar,
)
from sdpanel.storage import StorageRoot
from tests.fixtures.civitai_server import CivitAIServer


@pytest.fixture(scope="module")
def civ() -> Iterator[CivitAIServer]:
    with CivitAIServer(extra_models=0) as s:
        yield s


@pytest.fixture
def store(tmp_path: Path, civ: CivitAIServer) -> dict[str, Path]:
    root = StorageRoot.at(tmp_path / "store").ensure()
    old_version = civ.model(1001)["modelVersions"][1]  # 2002: an older version of 1001
    old_file = old_version["files"][0]
    known = root.kind_dir("checkpoints") / old_file["name"]
    known.write_bytes(civ.payload(old_file["id"]))
    write_model_sidecar(known, {"source": "civitai", "model_id": 1001, "version_id": 2002,
                                "model_name": "Dreamy Realism", "sha256": hashlib.sha256(known.read_bytes()).hexdigest()})
    lora_file = civ.model(1002)["modelVersions"][0]["files"][0]
    unknown_lora = root.kind_dir("loras") / "renamed_by_user.safetensors"
    unknown_lora.write_bytes(civ.payload(lora_file["id"]))
    stranger = root.kind_dir("loras") / "sub" / "homemade.safetensors"
    stranger.parent.mkdir()
    stranger.write_bytes(b"not on civitai" * 100)
    (root.kind_dir("loras") / "homemade.preview.png").write_bytes(b"\x89PNG")  # not a model
    (root.kind_dir("loras") / "half.safetensors.part").write_bytes(b"partial")  # not a model
    return {"root": root.path, "known": known, "lora": unknown_lora, "stranger": stranger}


def test_scan_finds_models_and_hashes_each_file_once(store: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = content_index.hash_file

    def counting(path, progress=None):  # type: ignore[no-untyped-def]
        calls.append(str(path))
        return real(path, progress)

    monkeypatch.setattr(content_index, "hash_file", counting)
    index = LocalIndex(store["root"])
    models = index.scan()
    assert {m.path.name for m in models} == {store["known"].name, "renamed_by_user.safetensors", "homemade.safetensors"}
    assert len(calls) == 3
    for key in ("known", "lora", "stranger"):
        assert index.is_installed(hashlib.sha256(store[key].read_bytes()).hexdigest())
    assert not index.is_installed("0" * 64) and not index.is_installed(None)
    kinds = {m.path.name: m.kind for m in models}
    assert kinds[store["known"].name] == "checkpoints" and kinds["homemade.safetensors"] == "loras"
    LocalIndex(store["root"]).scan()  # a new index (a new kernel) reuses the cached hashes
    assert len(calls) == 3
    store["stranger"].write_bytes(b"edited")  # a changed file is hashed again
    assert LocalIndex(store["root"]).scan() and len(calls) == 4


async def test_update_detection(store: dict[str, Path], civ: CivitAIServer) -> None:
    index = LocalIndex(store["root"])
    await index.ascan()
    async with CivitAIClient(civ.base_url) as client:
        updates = await index.check_updates(client)
    assert [m.path for m in updates] == [store["known"]]
    assert updates[0].latest_version_id == 2001 and updates[0].to_dict()["update_available"]
    assert index.installed_versions() == {2002}


async def test_identify_unknown_files_by_hash_writes_sidecars(store: dict[str, Path], civ: CivitAIServer) -> None:
    index = LocalIndex(store["root"])
    index.scan()
    async with CivitAIClient(civ.base_url, civ.token) as client:
        found = await index.identify_unknown(client, previews=True)
    assert [m.path for m in found] == [store["lora"]]
    side = find_sidecar(store["lora"])
    assert side is not None and side.name == "renamed_by_user.civitai.json"
    meta = json.loads(side.read_text())
    assert (meta["model_id"], meta["version_id"], meta["model_name"]) == (1002, 3002, "Anime Lineart")
    assert meta["sha256"] == hashlib.sha256(store["lora"].read_bytes()).hexdigest()
    assert civ.token not in side.read_text()
    preview = store["lora"].with_name("renamed_by_user.preview.png")
    assert preview.read_bytes().startswith(b"\x89PNG")
    assert read_sidecar(store["stranger"]) is None
    stranger = next(m for m in index.models if m.path == store["stranger"])
    assert "not found on CivitAI by hash" in stranger.notes
    # Next scan: the identified file is now known, with its sidecar.
    again = {m.path: m for m in LocalIndex(store["root"]).scan()}
    assert again[store["lora"]].model_id == 1002 and again[store["lora"]].source == "civitai"
