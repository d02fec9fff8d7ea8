"""The Generate cell's function (``sdpanel.cells.generate``) against a stub ComfyUI found through its
``webui-comfyui.json`` record, as a launched WebUI is. Headless: a prompt is generated and
the saved PNG listed with its seed; no prompt, no WebUI or a bad field each end with one
sentence saying what to do. Interactive: the Panel opens on its Generate tab with the
cell's prompt already queued."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import sdpanel.cells
from sdpanel.generate import get_service, read_text
from sdpanel.storage import StorageRoot
from tests.fixtures.stub_comfyui import StubComfyUI


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StorageRoot:
    monkeypatch.setenv("SDPANEL_STORAGE", str(tmp_path / "store"))
    monkeypatch.setenv("SDPANEL_HEADLESS", "1")
    root = StorageRoot.at(tmp_path / "store").ensure()
    root.kind_dir("checkpoints").mkdir(parents=True, exist_ok=True)
    (root.kind_dir("checkpoints") / "sd15.safetensors").write_bytes(b"weights")
    return root


@pytest.fixture
def comfy(store: StorageRoot) -> Iterator[StubComfyUI]:
    with StubComfyUI(step_delay=0.01, checkpoints=["sd15.safetensors"]) as stub:
        store.state_path("pids", "webui-comfyui.json").write_text(json.dumps({
            "name": "comfyui", "port": stub.port, "pid": os.getpid(), "cmdline": psutil.Process().cmdline()}))
        yield stub  # type: ignore[misc]


def test_headless_generates_and_lists_the_files(store: StorageRoot, comfy: StubComfyUI,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    result = sdpanel.cells.generate("a tiny robot watering plants", negative_prompt="", checkpoint="",
                                    steps=8, seed=77, width=128, height=96)
    out = capsys.readouterr().out
    assert "Generate: done, seed 77, 1 image(s):" in out and "step 8 of 8" in out
    path = result.images[0]
    assert str(path) in out and path.is_file() and store.contains(path)
    assert "Model: sd15" in read_text(path.read_bytes())["parameters"]  # empty CHECKPOINT: the store's first


def test_headless_without_prompt_does_nothing(store: StorageRoot, capsys: pytest.CaptureFixture[str]) -> None:
    assert sdpanel.cells.generate("", steps=20) is None
    assert "no PROMPT" in capsys.readouterr().out


def test_headless_failures_are_one_sentence(store: StorageRoot, comfy: StubComfyUI,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(sdpanel.cells.GenerateCellError, match=r"width: 100 is not a multiple of 8"):
        sdpanel.cells.generate("p", width=100)
    (store.state_dir / "pids" / "webui-comfyui.json").unlink()
    get_service(store).refresh_backends()
    # No WebUI and no engine packages (with them the built-in engine would take the job).
    monkeypatch.setattr("sdpanel.generate._builtin.has_engine_packages", lambda: False)
    with pytest.raises(sdpanel.cells.GenerateCellError, match="No WebUI is running: launch one with the Launch cell"):
        sdpanel.cells.generate("p")


def test_interactive_opens_the_tab_with_the_prompt_queued(store: StorageRoot, comfy: StubComfyUI,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDPANEL_HEADLESS", "0")
    from sdpanel.panels import Panel

    assert sdpanel.cells.generate("a lantern in the fog", steps=3, width=64, height=64) is None
    panel = Panel()
    try:
        assert panel.active_tab == "generate"
        service = get_service(store)
        deadline = time.monotonic() + 20  # queued from the runtime, after validation
        while not (jobs := [j for j in service.queue.jobs() if j.request.prompt == "a lantern in the fog"]):
            assert time.monotonic() < deadline, panel.generate_state
            time.sleep(0.05)
        job = jobs[0]
        assert job.future.result(20).state == "succeeded"
        assert job.request.checkpoint == "sd15.safetensors"
    finally:
        panel.close()
