"""The Models tab's Python side against the CivitAI test server: search → compact cards,
cursor paging, filters, pasted links, details, selection → download specs → the queue,
and errors → the panel's error state → Retry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdpanel.panels import Panel
from sdpanel.panels._models_tab import ModelsController
from sdpanel.panels._services import downloads_queue
from sdpanel.runtime import get_runtime
from tests.fixtures.civitai_server import CivitAIServer
from tests.fixtures.waiting import wait_for


class FakeMonitor:
    def sample(self) -> dict[str, Any]:
        return {"cpu": {"percent": 1.0}}


@pytest.fixture(scope="module")
def civitai() -> Iterator[CivitAIServer]:
    with CivitAIServer(extra_models=200) as srv:
        yield srv


@pytest.fixture
def storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, civitai: CivitAIServer) -> Path:
    root = tmp_path / "storage"
    monkeypatch.setenv("SDPANEL_STORAGE", str(root))
    monkeypatch.setenv("SDPANEL_PLATFORM", "local")
    monkeypatch.setenv("SDPANEL_CIVITAI_BASE_URL", civitai.base_url)
    monkeypatch.setenv("SDPANEL_DOWNLOAD_ENGINE", "python")
    monkeypatch.delenv("CIVITAI_TOKEN", raising=False)
    return root


@pytest.fixture
def panel(storage: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Panel]:
    p = Panel(monitor=FakeMonitor(), sample_interval=1.0)
    p.cues = []  # type: ignore[attr-defined]
    monkeypatch.setattr(p, "send", lambda content, buffers=None: p.cues.append(content))  # type: ignore[attr-defined]
    try:
        yield p
    finally:
        p.close()


def ctl(p: Panel) -> ModelsController:
    return p._sdp_models  # type: ignore[attr-defined,no-any-return]


def act(p: Panel, action: str, **payload: Any) -> None:
    p._on_msg(p, {"action": action, **payload}, [])


def search(p: Panel, **filters: Any) -> dict[str, Any]:
    """Run a search like the browser does and return its first page."""
    f = {"sub": "checkpoints", "query": "", "base_models": [], "sort": "Highest Rated",
         "period": "AllTime", "nsfw": False, **filters}
    p.models_filters = f  # the browser writes the UI-owned trait, then sends the intent
    before = ctl(p).seq
    act(p, "models.search", filters=f)
    wait_for(lambda: p.models_state.get("seq") == before + 1 and p.models_state.get("status") in ("ready", "error"),
             what="search result")
    return dict(p.models_page)


def test_tab_is_registered_with_small_static_meta(panel: Panel) -> None:
    assert {"id": "models", "label": "Models"} in panel.tabs
    meta = panel.models_meta
    assert [s["id"] for s in meta["subtabs"]] == ["checkpoints", "loras", "vae", "embeddings", "controlnet",
                                                  "upscalers", "other", "presets", "hf"]
    assert meta["nsfw"] is False and meta["free"] > 0
    assert panel.models_state["status"] == "idle"  # no network before a view asks


def test_search_gives_compact_cards_of_the_subtab(panel: Panel, civitai: CivitAIServer) -> None:
    page = search(panel, sub="checkpoints")
    assert panel.models_state["status"] == "ready", panel.models_state
    cards = page["cards"]
    assert cards and {c["t"] for c in cards} == {"Checkpoint"}
    assert [r.query for r in civitai.requests_to("/api/v1/models") if "types=Checkpoint" in r.query]
    card = next(c for c in cards if c["id"] == 1001)
    assert card["k"] == f"civitai:2001:{card['f']}" and card["n"] == "Dreamy Realism" and card["c"] == "alice"
    assert card["b"] == "SD 1.5" and card["s"] > 4096 and card["kind"] == "checkpoints"
    # The thumbnail is a URL for the browser, never image bytes.
    assert card["img"].startswith(civitai.base_url + "/img/") and not card["x"]
    assert "description" not in json.dumps(card) and len(json.dumps(card)) < 600
    # Base models come from the enums endpoint.
    wait_for(lambda: "Pony" in panel.models_meta.get("base_models", []), what="enums")


def test_cursor_paging_appends_a_page_at_a_time(panel: Panel, civitai: CivitAIServer) -> None:
    first = search(panel, sub="loras")
    assert len(first["cards"]) == 100 and first["index"] == 0 and panel.models_state["more"] is True
    size = len(json.dumps(first))
    assert size < 200_000, size  # one page of synced traffic
    act(panel, "models.more", seq=first["seq"])
    wait_for(lambda: panel.models_page.get("index") == 1 and panel.models_state["status"] == "ready", what="page 2")
    second = panel.models_page
    assert second["seq"] == first["seq"] and second["cards"]
    assert not {c["k"] for c in first["cards"]} & {c["k"] for c in second["cards"]}
    assert any("cursor=" in r.query for r in civitai.requests_to("/api/v1/models"))
    assert panel.models_state["count"] == len(first["cards"]) + len(second["cards"])
    # The last page says so: no more cursor, and a further "more" is ignored.
    assert panel.models_state["more"] is False
    act(panel, "models.more", seq=first["seq"])
    assert panel.models_page["index"] == 1
    # A view opened late gets every page at once.
    act(panel, "models.replay")
    replay = panel.cues[-1]  # type: ignore[attr-defined]
    assert replay["cue"] == "models.replay" and [len(p) for p in replay["pages"]] == [100, len(second["cards"])]


def test_filters_tag_creator_and_nsfw(panel: Panel) -> None:
    cards = search(panel, sub="loras", base_models=["Pony"])["cards"]
    assert cards and {c["b"] for c in cards} == {"Pony"}
    assert {c["n"] for c in search(panel, sub="loras", query="#lineart")["cards"]} == {"Anime Lineart"}
    assert panel.models_state["note"] == "Tag #lineart"
    assert {c["c"] for c in search(panel, sub="loras", query="@carol")["cards"]} == {"carol"}
    # NSFW is off by default: the NSFW LoRA never shows; on, it shows with a blurred thumbnail.
    assert "Spicy Body" not in {c["n"] for c in search(panel, sub="loras", query="spicy")["cards"]}
    [spicy] = search(panel, sub="loras", query="spicy", nsfw=True)["cards"]
    assert spicy["x"] is True


def test_pasted_link_becomes_a_selectable_card(panel: Panel, civitai: CivitAIServer) -> None:
    [card] = search(panel, sub="checkpoints", query=f"{civitai.base_url}/models/1001?modelVersionId=2002")["cards"]
    assert card["src"] == "civitai" and card["v"] == 2002 and card["n"] == "Dreamy Realism"
    assert panel.models_state["note"] == "Pasted link"
    search(panel, sub="loras", query="urn:air:sdxl:lora:civitai:abc@1")
    assert panel.models_state["status"] == "error" and "numeric ids" in panel.models_state["error"]


def test_presets_subtab_is_offline(panel: Panel) -> None:
    cards = search(panel, sub="presets", base_models=["SDXL 1.0"])["cards"]
    assert cards and all(c["src"] == "preset" and c["b"] == "SDXL 1.0" and c["s"] for c in cards)


def test_details_lists_versions_files_and_words(panel: Panel) -> None:
    search(panel, sub="checkpoints")
    act(panel, "models.details", id=1001)
    wait_for(lambda: panel.models_details.get("status") == "ready", what="details")
    d = panel.models_details["model"]
    assert [v["v"] for v in d["versions"]] == [2001, 2002]
    files = d["versions"][0]["files"]
    assert {(f["type"], f["format"], f["fp"]) for f in files} == {
        ("Model", "SafeTensor", "fp32"), ("Pruned Model", "SafeTensor", "fp16"), ("VAE", "SafeTensor", "fp16")}
    assert next(f for f in files if f["type"] == "VAE")["kind"] == "vae"
    assert "<script>" in d["desc"]  # raw: the browser rebuilds it from a whitelist
    act(panel, "models.details", id=1002)
    wait_for(lambda: panel.models_details.get("id") == 1002 and panel.models_details.get("status") == "ready")
    assert panel.models_details["model"]["versions"][0]["words"] == ["anime", "masterpiece"]


def test_selection_across_subtabs_goes_to_the_queue(panel: Panel, storage: Path) -> None:
    ckpt = next(c for c in search(panel, sub="checkpoints")["cards"] if c["id"] == 1001)
    lora = next(c for c in search(panel, sub="loras", query="lineart")["cards"])
    act(panel, "models.details", id=1001)
    wait_for(lambda: panel.models_details.get("status") == "ready")
    vae_file = next(f for f in panel.models_details["model"]["versions"][0]["files"] if f["type"] == "VAE")
    selection = [
        {"k": ckpt["k"], "src": "civitai", "n": ckpt["n"], "s": ckpt["s"], "kind": ckpt["kind"], "sub": "checkpoints", "id": 1001},
        {"k": lora["k"], "src": "civitai", "n": lora["n"], "s": lora["s"], "kind": lora["kind"], "sub": "loras", "id": lora["id"]},
        {"k": vae_file["k"], "src": "civitai", "n": vae_file["n"], "s": vae_file["s"], "kind": "vae", "sub": "checkpoints", "id": 1001},
    ]
    panel.models_selection = selection  # UI-owned: the browser writes it
    act(panel, "models.download")
    wait_for(lambda: any(c.get("cue") == "models.sent" for c in panel.cues), what="sent cue")  # type: ignore[attr-defined]
    sent = next(c for c in panel.cues if c.get("cue") == "models.sent")  # type: ignore[attr-defined]
    assert sent["keys"] == [s["k"] for s in selection] and sent["message"].startswith("Sent 3 files")
    queue = downloads_queue()
    try:
        items = {i["name"]: i for i in queue.items()}
        assert {i["kind"] for i in items.values()} == {"checkpoints", "loras", "vae"}
        assert "DreamyRealism_v2_vae.safetensors" in items  # the exact (non-primary) file
        done = get_runtime().submit(queue.wait_all(60)).wait(70)
        assert {i["state"] for i in done} == {"done"}, done
        assert (storage / "vae" / "DreamyRealism_v2_vae.safetensors").is_file()
        assert (storage / "loras" / "AnimeLineart_v1.safetensors").is_file()
    finally:
        get_runtime().submit(queue.close()).wait(30)


def test_api_errors_show_in_the_panel_with_retry(panel: Panel, civitai: CivitAIServer) -> None:
    civitai.overload_search(2)  # 503 + Retry-After twice: more than the panel's one back-off
    search(panel, sub="vae")
    state = panel.models_state
    assert state["status"] == "error" and state["op"] == "search" and "overloaded" in state["error"]
    act(panel, "models.retry")
    wait_for(lambda: panel.models_state["status"] == "ready", what="retry")
    assert {c["n"] for c in panel.models_page["cards"]} == {"Clear VAE XL"}


def test_api_down_is_an_error_not_a_crash(storage: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDPANEL_CIVITAI_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    p = Panel(monitor=FakeMonitor(), sample_interval=1.0)
    try:
        search(p, sub="checkpoints")
        assert p.models_state["status"] == "error" and "unreachable" in p.models_state["error"]
        # The panel lives on: other sub-tabs and a retry still answer.
        search(p, sub="presets")
        assert p.models_state["status"] == "ready" and p.models_page["cards"]
    finally:
        p.close()


def test_hugging_face_subtab_lists_a_repos_weights(panel: Panel, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fixtures.hf_server import HFServer

    with HFServer() as hf:
        monkeypatch.setenv("HF_ENDPOINT", hf.endpoint)
        ctl(panel).ctx = None  # rebuilt from settings and the environment on the next search
        cards = search(panel, sub="hf", query="sdpanel-test/tiny-sd15")["cards"]
        assert panel.models_state["status"] == "ready", panel.models_state
        assert sorted(c["path"] for c in cards) == ["tiny-sd15.safetensors", "vae/tiny-vae.safetensors"]
        vae = next(c for c in cards if c["path"].startswith("vae/"))
        assert vae["kind"] == "vae" and vae["s"] == len(hf.payload("sdpanel-test/tiny-sd15", vae["path"]))
        spec = get_runtime().submit(ctl(panel).spec_for({"k": vae["k"]})).wait(20)
        assert spec.sha256 == hf.sha256("sdpanel-test/tiny-sd15", vae["path"]) and spec.source == "huggingface"
        # Without a repo the tab says what to paste instead of failing.
        assert search(panel, sub="hf", query="")["cards"] == []
        assert "owner/name" in panel.models_state["note"]
