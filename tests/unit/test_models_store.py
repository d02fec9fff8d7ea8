"""The Models tab's store-aware intents against the CivitAI test server: a selection the
store already has is held back with a "link instead" notice, linked or forced; updates of
installed models as cards; every version by file preference; hidden creators and models
that stay hidden in a new session."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sdpanel.panels import Panel
from sdpanel.panels._services import downloads_queue
from sdpanel.runtime import get_runtime
from tests.fixtures.civitai_server import CivitAIServer
from tests.fixtures.waiting import wait_for
from tests.unit.test_models_tab import FakeMonitor, act, civitai, panel, search, storage

__all__ = ["civitai", "panel", "storage"]  # fixtures used here


def cue(p: Panel, n: int) -> dict[str, Any]:
    """The n-th "models.sent" cue (0-based), once it arrived."""
    def sent() -> list[dict[str, Any]]:
        return [c for c in p.cues if c.get("cue") == "models.sent"]  # type: ignore[attr-defined]
    wait_for(lambda: len(sent()) > n, what=f"sent cue {n}")
    return sent()[n]


def entry(card: dict[str, Any], sub: str) -> dict[str, Any]:
    return {"k": card["k"], "src": card["src"], "n": card["n"], "s": card["s"], "kind": card["kind"],
            "sub": sub, "id": card.get("id"), "v": card.get("v"), "f": card.get("f")}


def queued() -> list[dict[str, Any]]:
    return downloads_queue().items()


def close_queue() -> None:
    get_runtime().submit(downloads_queue().close()).wait(30)


def test_what_the_store_has_is_held_back_then_linked_or_forced(panel: Panel, storage: Path,
                                                              civitai: CivitAIServer) -> None:
    card = next(c for c in search(panel, sub="loras", query="pony")["cards"] if c["id"] == 1003)
    data = civitai.payload(int(card["f"]))
    kept = storage / "loras" / "pony-renamed.safetensors"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(data)
    panel.models_selection = [entry(card, "loras")]
    try:
        act(panel, "models.download")
        held = cue(panel, 0)
        assert held["keys"] == [] and not queued()
        [have] = held["have"]
        assert have["k"] == card["k"] and have["path"] == "loras/pony-renamed.safetensors"
        assert "same sha256" in have["message"] and "link it instead" in have["message"]
        act(panel, "models.link", keys=[card["k"]])
        linked = cue(panel, 1)
        assert linked["keys"] == [card["k"]] and "Linked 1 file" in linked["message"]
        target = storage / "loras" / "PonyStylePack_v1.safetensors"
        assert os.path.samefile(target, kept) and not queued()
        assert json.loads(target.with_suffix(".civitai.json").read_text())["model_id"] == 1003
        target.unlink()
        act(panel, "models.download", selection=[entry(card, "loras")], force=True)
        forced = cue(panel, 2)
        assert forced["keys"] == [card["k"]] and [i["name"] for i in queued()] == ["PonyStylePack_v1.safetensors"]
    finally:
        close_queue()


def test_updates_show_installed_models_with_a_newer_version(panel: Panel, storage: Path,
                                                             civitai: CivitAIServer) -> None:
    old = civitai.model(1001)["modelVersions"][1]
    f = old["files"][0]
    path = storage / "checkpoints" / f["name"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(civitai.payload(f["id"]))
    path.with_suffix(".civitai.json").write_text(json.dumps(
        {"source": "civitai", "model_id": 1001, "version_id": old["id"], "file_id": f["id"]}))
    search(panel, sub="checkpoints")
    before = panel.models_state["seq"]
    act(panel, "models.updates")
    wait_for(lambda: panel.models_state.get("seq") == before + 1 and panel.models_state.get("status") == "ready",
             what="updates")
    cards = panel.models_page["cards"]
    assert [(c["id"], c["v"], c["st"]) for c in cards] == [(1001, 2001, "update")]
    assert "1 of 1 installed CivitAI model" in panel.models_state["note"]
    newest = civitai.model(1001)["modelVersions"][0]["files"][0]
    (path.parent / newest["name"]).write_bytes(civitai.payload(newest["id"]))
    (path.parent / newest["name"]).with_suffix(".civitai.json").write_text(json.dumps(
        {"source": "civitai", "model_id": 1001, "version_id": 2001, "file_id": newest["id"]}))
    before = panel.models_state["seq"]
    act(panel, "models.updates")
    wait_for(lambda: panel.models_state.get("seq") == before + 1 and panel.models_state.get("status") == "ready",
             what="updates again")
    assert panel.models_page["cards"] == [], "the newest version is in the store too: no update"


def test_every_version_by_file_preference(panel: Panel, civitai: CivitAIServer) -> None:
    versions = civitai.model(1001)["modelVersions"]
    pruned = next(f for f in versions[0]["files"] if f["type"] == "Pruned Model")
    try:
        act(panel, "models.all_versions", id=1001, prefer="fp16,pruned")
        sent = cue(panel, 0)
        assert sent["keys"] == [f"civitai:2001:{pruned['id']}", f"civitai:2002:{versions[1]['files'][0]['id']}"]
        assert sorted(i["name"] for i in queued()) == sorted([pruned["name"], versions[1]["files"][0]["name"]])
    finally:
        close_queue()


def test_hidden_creators_and_models_stay_hidden_in_a_new_session(panel: Panel, storage: Path) -> None:
    def ids(p: Panel) -> set[int]:
        return {c["id"] for c in search(p, sub="loras")["cards"]}

    assert {1002, 1005} <= ids(panel)
    act(panel, "models.hide", creator="alice")  # 1005's creator
    wait_for(lambda: panel.models_meta.get("hidden") == 1, what="hidden count")
    act(panel, "models.hide", id=1002, name="Anime Lineart")
    wait_for(lambda: panel.models_meta.get("hidden") == 2, what="hidden count")
    assert not {1002, 1005} & ids(panel)
    assert (storage / ".sdpanel" / "models-hidden.json").is_file()
    fresh = Panel(monitor=FakeMonitor(), sample_interval=1.0)  # another session, same store
    try:
        assert fresh.models_meta["hidden"] == 2 and not {1002, 1005} & ids(fresh)
    finally:
        fresh.close()
    act(panel, "models.hide", undo=True)
    wait_for(lambda: panel.models_meta.get("hidden") == 0, what="unhidden")
    assert {1002, 1005} <= ids(panel)
