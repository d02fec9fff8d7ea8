"""The preset data: schema, uniqueness, coverage, and offline resolution to specs."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from sdpanel.downloads import DownloadSpec
from sdpanel.sources import (
    ResolveContext,
    get_preset,
    preset_spec,
    presets,
    resolve_link_sync,
    validate_presets,
)
from sdpanel.storage import kind_ids


def test_schema_is_valid_and_ids_urls_unique() -> None:
    assert validate_presets() == []
    items = presets()
    assert len({p["id"] for p in items}) == len(items)
    assert len({p["url"] for p in items}) == len(items)
    assert len({(p["kind"], p["filename"]) for p in items}) == len(items), "two presets, one file name"


def test_validator_catches_bad_entries() -> None:
    good = dict(get_preset("sd15-base"))
    bad: tuple[dict[str, Any], ...] = (
        good, dict(good),  # duplicate id and url
        {**good, "id": "x1", "url": "http://insecure/x", "sha256": "ABC", "kind": "nope"},
        {**good, "id": "x2", "url": "https://a/b", "verified": True, "sha256": None, "filename": "../x"},
    )
    problems = "\n".join(validate_presets(bad))
    for needle in ("duplicate id", "duplicate url", "https", "64 lower-case hex", "unknown kind",
                   "verified presets need", "plain file name"):
        assert needle in problems


def test_coverage_of_the_popular_set() -> None:
    ids = {p["id"] for p in presets()}
    assert {"sd15-base", "sdxl-base-1.0", "pony-v6-xl", "illustrious-xl-0.1", "flux1-dev-fp8",
            "flux1-schnell-fp8", "sdxl-vae-fp16-fix", "sd15-vae-ft-mse-840000", "sd15-controlnet-canny",
            "sd15-controlnet-depth", "sd15-controlnet-openpose", "sdxl-controlnet-union-promax",
            "4x-ultrasharp", "realesrgan-x4plus", "adetailer-face-yolov8n", "adetailer-hand-yolov8n",
            "sam-vit-b"} <= ids
    for p in presets():
        assert p["kind"] in kind_ids()
        if p["verified"]:
            assert p["sha256"] and p["size"] > 1_000_000


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("preset resolution must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("preset_id", [p["id"] for p in presets()])
def test_each_preset_resolves_offline(preset_id: str) -> None:
    p = get_preset(preset_id)
    spec = preset_spec(preset_id)
    assert isinstance(spec, DownloadSpec)
    assert (spec.url, spec.kind, spec.filename, spec.sha256, spec.size) == (
        p["url"], p["kind"], p["filename"], p["sha256"], p["size"])
    assert spec.metadata["preset_id"] == preset_id and spec.metadata["base_model"] == p["base_model"]


def test_presets_follow_the_configured_mirrors_and_tokens() -> None:
    ctx = ResolveContext(civitai_base_url="http://127.0.0.1:8001", hf_endpoint="https://hf-mirror.com",
                         civitai_token="civ-token-abcdef", hf_token="hf_tokenabcdefabcdef12")
    pony = preset_spec("pony-v6-xl", ctx)
    assert pony.url == "http://127.0.0.1:8001/api/download/models/290640" and pony.source == "civitai"
    assert pony.headers == {"127.0.0.1": {"Authorization": "Bearer civ-token-abcdef"}}
    sdxl = preset_spec("sdxl-base-1.0", ctx)
    assert sdxl.url.startswith("https://hf-mirror.com/stabilityai/") and "hf-mirror.com" in sdxl.headers
    sam = preset_spec("sam-vit-b", ctx)
    assert sam.headers == {} and sam.url.startswith("https://dl.fbaipublicfiles.com/")
    assert "civ-token" not in str(sam.to_public_dict()) and "civ-token" not in str(pony.to_public_dict())


def test_preset_link_form() -> None:
    assert resolve_link_sync("preset:4x-ultrasharp", ResolveContext(probe_links=False)).filename == "4x-UltraSharp.pth"
