"""The Generate tab's Python side against the stub ComfyUI: a submitted form becomes a job
on the process's queue, its progress folds into the small ``generate_state`` trait,
previews and finished PNGs reach the browser as custom messages (bytes in a buffer, never
in a trait), and a bad form comes back as one message per field."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdpanel.generate import GenerateService
from sdpanel.generate._png import decode_png, encode_png, gradient_png, image_info
from sdpanel.panels._generate_tab import GenerateController
from sdpanel.runtime import get_runtime
from sdpanel.storage import StorageRoot
from tests.fixtures.stub_comfyui import StubComfyUI
from tests.fixtures.waiting import wait_for


class FakePanel:
    """What the controller needs of a Panel: the two traits, hold_sync, send, toast."""

    def __init__(self) -> None:
        self.generate_state: dict[str, Any] = {}
        self.generate_options: dict[str, Any] = {}
        self.sent: list[tuple[dict[str, Any], list[bytes]]] = []
        self.toasts: list[str] = []

    @contextlib.contextmanager
    def hold_sync(self) -> Iterator[None]:
        yield

    def send(self, msg: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        self.sent.append((msg, list(buffers or [])))

    def toast(self, message: str, level: str = "info") -> None:
        self.toasts.append(message)

    def messages(self, kind: str) -> list[tuple[dict[str, Any], list[bytes]]]:
        return [(m, b) for m, b in self.sent if m.get("type") == kind]


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


@pytest.fixture
def stub() -> Iterator[StubComfyUI]:
    with StubComfyUI(step_delay=0.05) as s:
        yield s  # type: ignore[misc]


@pytest.fixture
def env(tmp_path: Path, stub: StubComfyUI) -> Iterator[tuple[FakePanel, GenerateController, GenerateService]]:
    store = StorageRoot.at(tmp_path / "store").ensure()
    store.kind_dir("checkpoints").mkdir(parents=True, exist_ok=True)
    (store.kind_dir("checkpoints") / "model.safetensors").write_bytes(b"weights")
    service = GenerateService(store, get_runtime())
    service.use_backend(stub.url, "comfyui")
    panel = FakePanel()
    ctl = GenerateController(panel, lambda: service, max_rate=50)
    ctl.attach()
    wait_for(lambda: panel.generate_options.get("models"), what="the form's options")
    yield panel, ctl, service
    ctl.detach()
    for backend in service.queue.backends:  # their aiohttp sessions live on the runtime loop
        get_runtime().submit(backend.close()).wait(5)


def job_of(panel: FakePanel, state: str) -> dict[str, Any]:
    jobs = panel.generate_state.get("jobs") or []
    return next((j for j in jobs if j["state"] == state), {})


def test_options_list_the_store_and_the_backend(env: Any, stub: StubComfyUI) -> None:
    panel, _ctl, _svc = env
    opts = panel.generate_options
    assert opts["models"]["checkpoints"] == ["model.safetensors"]
    assert {"name": "euler", "label": "Euler"} in opts["samplers"]
    assert opts["limits"]["size"] == [64, 4096]
    assert [b["url"] for b in opts["backends"]] == [stub.url] and not opts["error"]


def test_txt2img_job_runs_and_images_reach_the_browser_as_buffers(env: Any, stub: StubComfyUI) -> None:
    panel, ctl, service = env
    ctl.submit({"ref": "r1", "prompt": "a lighthouse at dusk", "checkpoint": "model.safetensors",
                "steps": 8, "cfg": 6.5, "seed": 1234, "width": 96, "height": 64, "sampler": "euler"})
    done = wait_for(lambda: job_of(panel, "succeeded"), what="the job to succeed")
    state = panel.generate_state
    assert state["accepted"] == "r1" and state["errors"] == {} and state["message"] == ""
    assert done["seed"] == 1234 and done["step"] == done["steps"] == 8
    assert done["params"]["prompt"] == "a lighthouse at dusk" and done["params"]["cfg"] == 6.5
    assert "denoise" not in done["params"]  # txt2img: no img2img-only fields on the card
    assert [im["seed"] for im in done["images"]] == [1234]
    # The stub really got the graph with this prompt, and the PNG came back as bytes.
    assert any("a lighthouse at dusk" in json.dumps(g) for g in stub.prompts)
    msg, bufs = wait_for(lambda: panel.messages("generate.image"), what="image message")[0]
    assert msg["id"] == done["id"] and msg["n"] == 0 and len(bufs) == 1
    info = image_info(bufs[0])
    assert (info.width, info.height) == (96, 64)
    assert bufs[0] == service.queue.image_path(done["id"], 0).read_bytes()
    # Live previews went out as (throttled) messages, not state.
    assert panel.messages("generate.preview")
    assert "base64" not in json.dumps(panel.generate_state)
    assert len(json.dumps(panel.generate_state)) < 4000


def test_validation_errors_come_back_per_field(env: Any, stub: StubComfyUI) -> None:
    panel, ctl, _svc = env
    ctl.submit({"ref": "bad", "prompt": "  ", "checkpoint": "missing.safetensors", "steps": 0,
                "width": 500, "height": 512, "cfg": 99})
    errors = wait_for(lambda: panel.generate_state.get("errors"), what="field errors")
    assert set(errors) == {"prompt", "checkpoint", "steps", "width", "cfg"}
    assert "multiple of 8" in errors["width"] and "496 or 504" in errors["width"]
    assert "not in the store" in errors["checkpoint"] and "model.safetensors" in errors["checkpoint"]
    state = panel.generate_state
    assert state["jobs"] == [] and state["accepted"] != "bad" and "Fix the marked fields" in state["message"]
    assert stub.prompts == []
    # The next good submission clears the errors.
    ctl.submit({"ref": "good", "prompt": "ok", "checkpoint": "model.safetensors", "steps": 2,
                "width": 64, "height": 64})
    wait_for(lambda: panel.generate_state.get("accepted") == "good", what="accepted")
    assert panel.generate_state["errors"] == {}


def test_inpaint_uploads_the_painted_mask(env: Any, stub: StubComfyUI) -> None:
    panel, ctl, _svc = env
    w, h = 96, 64
    rows = [bytes(255 if 16 <= x < 32 and 8 <= y < 24 else 0 for x in range(w)) for y in range(h)]
    mask = encode_png(w, h, rows, channels=1)
    ctl.submit({"ref": "ip", "mode": "inpaint", "prompt": "a red door", "checkpoint": "model.safetensors",
                "steps": 3, "init_image": data_url(gradient_png(w, h, 7)), "mask": data_url(mask)})
    done = wait_for(lambda: job_of(panel, "succeeded"), what="the inpaint job")
    assert done["mode"] == "inpaint" and done["params"]["width"] == 96 and done["params"]["height"] == 64
    sent = next(v for k, v in stub.uploads.items() if f"{done['id']}-mask" in k)
    got = decode_png(sent, 10**6)
    assert got.rows[10][20 * got.channels] == 255 and got.rows[40][2 * got.channels] == 0


def test_a_missing_mask_is_a_field_error(env: Any) -> None:
    panel, ctl, _svc = env
    ctl.submit({"ref": "x", "mode": "inpaint", "prompt": "p", "checkpoint": "model.safetensors",
                "init_image": data_url(gradient_png(64, 64))})
    errors = wait_for(lambda: panel.generate_state.get("errors"), what="field errors")
    assert list(errors) == ["mask"] and "white where the image is repainted" in errors["mask"]


def test_cancel_hello_and_clear(env: Any, stub: StubComfyUI) -> None:
    panel, ctl, _svc = env
    stub.step_delay = 0.2
    ctl.submit({"ref": "c", "prompt": "slow", "checkpoint": "model.safetensors", "steps": 50,
                "width": 64, "height": 64})
    running = wait_for(lambda: job_of(panel, "running"), what="the job to run")
    ctl.cancel({"id": running["id"]})
    wait_for(lambda: job_of(panel, "cancelled"), what="the job to be cancelled")
    assert stub.interrupts >= 1
    stub.step_delay = 0.0
    ctl.submit({"ref": "d", "prompt": "fast", "checkpoint": "model.safetensors", "steps": 2,
                "width": 64, "height": 64})
    done = wait_for(lambda: job_of(panel, "succeeded"), what="the next job")
    wait_for(lambda: panel.messages("generate.image"), what="its image")
    # A view that opens later asks for what it lacks; one that has it gets nothing again.
    panel.sent.clear()
    ctl.hello({"have": []})
    wait_for(lambda: panel.messages("generate.image"), what="resent image")
    panel.sent.clear()
    ctl.hello({"have": [f"{done['id']}/0"]})
    time.sleep(0.3)
    assert not panel.messages("generate.image")
    ctl.clear()
    wait_for(lambda: panel.generate_state["jobs"] == [], what="cleared list")


def test_a_finished_download_refreshes_the_model_pickers(env: Any) -> None:
    from sdpanel.runtime import StateEvent

    panel, _ctl, service = env
    (service.storage.kind_dir("checkpoints") / "juggernaut_xl.safetensors").write_bytes(b"w")
    get_runtime().bus.publish(StateEvent(topic="downloads", key="d1", state="done", data={}))
    wait_for(lambda: "juggernaut_xl.safetensors" in panel.generate_options["models"]["checkpoints"],
             what="the new checkpoint in the picker")
