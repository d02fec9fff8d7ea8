"""The Storage tab's Python side: usage → traits, cleaner intents (preview → apply frees
exactly the previewed bytes), bad input, and cell 5 headless."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdpanel.panels import Panel
from sdpanel.panels._storage_tab import MODEL_CAP, criteria_from, usage_traits
from sdpanel.storage import StorageRoot, usage_report
from tests.fixtures.waiting import wait_for

MiB = 1024 * 1024


class FakeMonitor:
    def sample(self) -> dict[str, Any]:
        return {"cpu": {"percent": 1.0}}


def _write(path: Path, size: int, age_s: float = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.truncate(size)  # sparse is fine: sizes are what the store reports
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t))
    return path


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StorageRoot:
    root = StorageRoot.at(tmp_path / "storage").ensure()
    monkeypatch.setenv("SDPANEL_STORAGE", str(root.path))
    monkeypatch.setenv("SDPANEL_PLATFORM", "local")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # never the real pip cache
    monkeypatch.setenv("SDPANEL_HEADLESS", "1")
    _write(root.path / "checkpoints" / "big.safetensors", 6 * MiB)
    (root.path / "checkpoints" / "big.civitai.json").write_text(json.dumps({"base_model": "SDXL 1.0"}))
    _write(root.path / "loras" / "style.safetensors", 2 * MiB, age_s=40 * 86400)
    (root.path / "loras" / "style.hf.json").write_text(json.dumps({"baseModel": "SD 1.5"}))
    _write(root.path / "loras" / "tiny.safetensors", 300 * 1024)
    _write(root.path / "vae" / "vae.safetensors", 1 * MiB)
    _write(root.path / "checkpoints" / "half.safetensors.part", 3 * MiB, age_s=3600)
    _write(root.path / "loras" / "fresh.safetensors.part", 1 * MiB)  # a download in progress
    return root


@pytest.fixture
def panel(store: StorageRoot) -> Iterator[Panel]:
    p = Panel(monitor=FakeMonitor(), sample_interval=0.05)
    try:
        yield p
    finally:
        p.close()


def intent(p: Panel, action: str, **payload: Any) -> None:
    p._on_msg(p, {"action": action, **payload}, None)


def toasts(p: Panel, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(p, "send", lambda content, buffers=None: sent.append(content))
    return sent


def test_usage_traits_are_compact_and_complete(store: StorageRoot) -> None:
    usage, models = usage_traits(usage_report(store))
    assert [m["p"] for m in models] == ["checkpoints/big.safetensors", "loras/style.safetensors",
                                        "vae/vae.safetensors", "loras/tiny.safetensors"]
    big = models[0]
    assert set(big) == {"p", "k", "s", "t", "b", "w", "d"}
    assert (big["k"], big["s"], big["b"], big["w"], big["d"]) == ("checkpoints", 6 * MiB, "SDXL 1.0", [], False)
    assert models[1]["b"] == "SD 1.5"  # CivitAI's own key in an .hf.json works too
    kinds = {k["id"]: k for k in usage["kinds"]}
    assert list(kinds) == ["checkpoints", "loras", "vae"]  # largest first, empty kinds left out
    # Sidecars count in the kind's bytes but are no model: they are the "rest" block.
    side = len((store.path / "checkpoints" / "big.civitai.json").read_bytes())
    assert kinds["checkpoints"]["bytes"] == 6 * MiB + side
    assert (kinds["checkpoints"]["rest"], kinds["checkpoints"]["rest_files"]) == (side, 0)
    assert usage["partials"] == {"count": 2, "bytes": 4 * MiB}
    assert usage["disks"]["store"]["free"] > 0 and usage["models_total"] == 4
    assert len(json.dumps([usage, models])) < 4000


def test_model_list_is_capped_and_the_rest_is_summed(store: StorageRoot) -> None:
    for i in range(MODEL_CAP + 20):
        _write(store.path / "embeddings" / f"e{i:04d}.pt", 1000 + i)
    usage, models = usage_traits(usage_report(store))
    assert len(models) == MODEL_CAP and usage["models_total"] == MODEL_CAP + 24
    emb = next(k for k in usage["kinds"] if k["id"] == "embeddings")
    shown = sum(m["s"] for m in models if m["k"] == "embeddings")
    assert emb["rest"] == emb["bytes"] - shown > 0 and emb["rest_files"] > 0
    assert len(json.dumps(models)) < 120 * MODEL_CAP  # a few dozen bytes per model


def test_criteria_from_the_form() -> None:
    assert criteria_from({"kinds": ["loras"], "larger_than_mb": "1.5", "older_than_days": "", "unused": False,
                          "leftovers": True, "caches": ["pip"], "files": []}) == {
        "kinds": ["loras"], "larger_than": int(1.5 * MiB), "leftovers": True, "caches": ["pip"]}
    with pytest.raises(ValueError, match="Choose what to clean"):
        criteria_from({"kinds": [], "larger_than_mb": "", "leftovers": False})
    with pytest.raises(ValueError, match="unknown kind.*known: checkpoints"):
        criteria_from({"kinds": ["lora"]})
    with pytest.raises(ValueError, match=r"Larger than \(MiB\): 'ten' is not a number"):
        criteria_from({"larger_than_mb": "ten"})
    with pytest.raises(ValueError, match=r"Older than \(days\) must be 0 or more"):
        criteria_from({"older_than_days": -1})
    with pytest.raises(ValueError, match="unknown cache"):
        criteria_from({"caches": ["conda"]})


def test_panel_attach_publishes_usage(panel: Panel) -> None:
    assert panel.tabs[-1] == {"id": "settings", "label": "Settings"}
    assert {"id": "storage", "label": "Storage"} in panel.tabs
    assert wait_for(lambda: panel.storage_usage.get("models_total") == 4)
    assert panel.storage_models[0]["p"] == "checkpoints/big.safetensors"
    assert wait_for(lambda: panel.storage_status.get("busy") == "")


def test_preview_then_apply_frees_exactly_the_previewed_bytes(panel: Panel, store: StorageRoot) -> None:
    assert wait_for(lambda: panel.storage_usage.get("models_total") == 4 and not panel.storage_status["busy"])
    intent(panel, "storage.preview", kinds=["loras"], older_than_days="30", leftovers=True,
           files=["vae/vae.safetensors"])
    assert wait_for(lambda: bool(panel.storage_plan.get("id")))
    plan = panel.storage_plan
    paths = sorted(i["p"] for i in plan["items"])
    # The old LoRA with its sidecar, the chosen VAE, the stale .part — never the fresh one.
    assert paths == ["checkpoints/half.safetensors.part", "loras/style.hf.json",
                     "loras/style.safetensors", "vae/vae.safetensors"]
    sizes = {p: (store.path / p).stat().st_size for p in paths}
    assert plan["bytes"] == sum(sizes.values()) and plan["count"] == 4
    assert all((store.path / p).exists() for p in paths)  # a preview deletes nothing

    intent(panel, "storage.apply", id=plan["id"])
    assert wait_for(lambda: panel.storage_result.get("deleted") == 4)
    assert panel.storage_result["bytes_freed"] == plan["bytes"]
    assert not any((store.path / p).exists() for p in paths)
    assert (store.path / "loras" / "fresh.safetensors.part").exists()
    assert panel.storage_plan == {}
    # Usage is read again after the clean.
    assert wait_for(lambda: panel.storage_usage.get("models_total") == 2)


def test_bad_intents_explain_themselves(panel: Panel, monkeypatch: pytest.MonkeyPatch) -> None:
    assert wait_for(lambda: panel.storage_usage and not panel.storage_status.get("busy"))
    sent = toasts(panel, monkeypatch)
    intent(panel, "storage.preview", kinds=[], leftovers=False)
    intent(panel, "storage.apply", id=99)
    intent(panel, "storage.preview", files=["/etc/passwd"])
    assert [m["level"] for m in sent] == ["error", "error"]
    assert "Choose what to clean first" in sent[0]["message"]
    assert "out of date; press Preview again" in sent[1]["message"]
    # A file outside the store is refused in the preview, with the reason shown.
    assert wait_for(lambda: bool(panel.storage_plan.get("id")))
    assert panel.storage_plan["count"] == 0
    assert "outside the store" in panel.storage_plan["errors"][0]
    intent(panel, "storage.cancel")
    assert wait_for(lambda: panel.storage_plan == {})


def test_service_error_shows_with_retry(panel: Panel, store: StorageRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    assert wait_for(lambda: not panel.storage_status.get("busy") and panel.storage_usage)
    import sdpanel.storage._service as service

    def broken(*_a: Any, **_k: Any) -> Any:
        raise PermissionError("store unreadable")

    monkeypatch.setattr(service, "usage_report", broken)
    intent(panel, "storage.refresh")
    assert wait_for(lambda: "store unreadable" in panel.storage_status.get("error", ""))
    assert panel.storage_status["retry"] == "storage.refresh"
    monkeypatch.undo()
    intent(panel, "storage.refresh")
    assert wait_for(lambda: panel.storage_status == {"busy": "", "error": "", "retry": ""})


def test_storage_cell_headless_reports_and_cleans_only_when_asked(store: StorageRoot,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import sdpanel.cells

    part = store.path / "checkpoints" / "half.safetensors.part"
    text = sdpanel.cells.storage()
    assert text is not None and f"Store {store.path}" in text and "no clean" in text
    assert part.exists()
    text = sdpanel.cells.storage(clean_leftovers=True)
    assert text is not None and "deleted 1 item(s), freed 3.0 MiB" in text
    assert not part.exists() and (store.path / "loras" / "fresh.safetensors.part").exists()
    assert "freed 3.0 MiB" in capsys.readouterr().out
