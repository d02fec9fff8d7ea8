"""sdpanel's A1111 backend and the stub A1111 against what the real Forge (dfdcbab6)
answered (``tests/fixtures/recorded/forge-dfdcbab6-api.json``, written by the real-WebUI
tier): the stub's answers have the real shape, the backend reads the real answers (a
server replaying them), and the behaviour the stub copies from Forge (silent fallback to
the loaded model, checkpoints listed only after a refresh) is met by the backend."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sdpanel.generate import GenerationFailed, generate, get_service
from sdpanel.generate._png import image_info
from sdpanel.storage import StorageRoot
from tests.fixtures.forge_protocol import load_recorded, post_json, shape
from tests.fixtures.stub_a1111 import StubA1111
from tests.fixtures.stub_comfyui import ThreadedApp

REC = load_recorded()
CKPT = REC["sd-models"][0]["title"].rsplit(" [", 1)[0]


class ReplayForge(ThreadedApp):
    """Answers with the recorded bodies: progress shows the recorded running state while a
    txt2img call is open, the idle one otherwise."""

    def __init__(self, hold: float = 0.6) -> None:
        super().__init__()
        self.hold = hold
        self.running = False
        self.bodies: list[dict[str, Any]] = []

    def build(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024**2)

        def recorded(key: str) -> Any:
            async def answer(_r: web.Request) -> web.Response:
                return web.json_response(REC[key] if key else {})
            return answer

        app.router.add_get("/sdapi/v1/sd-models", recorded("sd-models"))
        app.router.add_get("/sdapi/v1/options", recorded("options"))
        app.router.add_get("/sdapi/v1/progress", self.progress)
        app.router.add_post("/sdapi/v1/txt2img", self.txt2img)
        app.router.add_get("/internal/ping", recorded(""))
        return app

    async def progress(self, request: web.Request) -> web.Response:
        return web.json_response(REC["progress_running" if self.running else "progress_idle"])

    async def txt2img(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        await asyncio.sleep(self.hold / 2)  # loading the model: progress still shows the last job
        self.running = True
        await asyncio.sleep(self.hold)
        self.running = False
        return web.json_response(REC["txt2img"])


@pytest.fixture
def store(tmp_path: Path) -> StorageRoot:
    root = StorageRoot.at(tmp_path / "store").ensure()
    for name in (CKPT, "model.safetensors", "new.safetensors", "gone.safetensors"):
        (root.kind_dir("checkpoints") / name).write_bytes(b"x")
    for name in ("soft.safetensors", "late.safetensors"):
        (root.kind_dir("vae") / name).write_bytes(b"x")
    return root


def _get(url: str) -> Any:
    async def go() -> Any:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            return await r.json()

    return asyncio.run(go())


def test_the_recording_is_of_a_real_tiny_job() -> None:
    [b64] = REC["txt2img"]["images"]
    info = image_info(base64.b64decode(b64))
    assert (info.format, info.width, info.height) == ("png", 64, 64)
    state = REC["progress_running"]["state"]
    assert state["sampling_steps"] == 3 and 0 < state["sampling_step"] <= 3
    assert isinstance(REC["txt2img"]["info"], str)  # JSON in a string, as A1111 sends it


def test_stub_answers_have_the_real_shape() -> None:
    with StubA1111(step_delay=0.3, checkpoints=[CKPT]) as stub:
        assert shape(_get(f"{stub.url}/sdapi/v1/progress")) == shape(REC["progress_idle"])
        assert shape(_get(f"{stub.url}/sdapi/v1/sd-models")) == shape(REC["sd-models"])
        out: dict[str, Any] = {}
        body = {"prompt": "x", "steps": 3, "width": 64, "height": 64, "sampler_name": "Euler"}
        worker = threading.Thread(target=lambda: out.update(r=post_json(f"{stub.url}/sdapi/v1/txt2img", body)))
        worker.start()
        running = None
        for _ in range(100):
            p = _get(f"{stub.url}/sdapi/v1/progress?skip_current_image=false")
            if p["state"]["sampling_steps"]:
                running = p
                break
            time.sleep(0.02)
        worker.join(30)
        assert running is not None
        assert shape(running["state"]) == shape(REC["progress_running"]["state"])
        assert set(running) == set(REC["progress_running"])
        status, txt = out["r"]
        assert status == 200 and set(txt) == set(REC["txt2img"])
        # The infotext keys the stub sends are ones Forge sends too.
        assert set(json.loads(txt["info"])) <= set(json.loads(REC["txt2img"]["info"]))


def test_stub_takes_an_unknown_sampler_as_forge_does() -> None:
    with StubA1111() as stub:
        status, body = post_json(f"{stub.url}/sdapi/v1/txt2img", {"prompt": "x", "steps": 1, "sampler_name": "Nope"})
    assert {"status": status, "sampler_name": json.loads(body["info"])["sampler_name"]} == REC["bad_sampler"]


def test_backend_reads_the_real_answers(store: StorageRoot) -> None:
    with ReplayForge() as srv:
        get_service(store.path).use_backend(srv.url, "a1111").poll_interval = 0.05
        events: list[Any] = []
        result = generate("a lighthouse", checkpoint=CKPT, backend_url=srv.url, flavour="a1111",
                          storage=store.path, width=64, height=64, steps=3, timeout=30,
                          on_event=events.append)
    [path] = result.images
    info = image_info(path.read_bytes())
    assert (info.format, info.width, info.height) == ("png", 64, 64)
    state = REC["progress_running"]["state"]
    progress = [(e.data["step"], e.data["steps"]) for e in events if e.kind == "progress"]
    assert (state["sampling_step"], state["sampling_steps"]) in progress
    # The idle answer before sampling starts holds the last job's counters (2 steps, job 1):
    # never shown as this job's progress (it read "2/2", done, before the job began).
    assert {steps for _, steps in progress} == {3}
    [sent] = srv.bodies
    assert sent["override_settings"]["sd_model_checkpoint"] == CKPT


def test_a_checkpoint_added_after_the_launch_is_used_not_the_loaded_one(store: StorageRoot) -> None:
    """Forge lists what it found at start; without a refresh it drops the override and
    generates with the loaded model, saying nothing."""
    with StubA1111() as stub:
        stub.add_checkpoint("new.safetensors")  # downloaded into the store while it runs
        generate("x", checkpoint="new.safetensors", backend_url=stub.url, flavour="a1111",
                 storage=store.path, steps=2, timeout=30)
        assert stub.loaded == "new.safetensors"


def test_a_checkpoint_the_webui_cannot_see_is_refused_with_the_cause(store: StorageRoot) -> None:
    with StubA1111() as stub:
        with pytest.raises(GenerationFailed, match="does not list the checkpoint 'gone.safetensors', even "
                                                   "after refreshing its list"):
            generate("x", checkpoint="gone.safetensors", backend_url=stub.url, flavour="a1111",
                     storage=store.path, steps=2, timeout=30)
        assert not [r for r in stub.requests if r[0] == "txt2img"]  # nothing generated with another model


def test_forge_gets_the_vae_as_its_module_not_sd_vae(store: StorageRoot) -> None:
    """Forge ignores ``sd_vae`` ("Managed by Forge"): the VAE must go as
    ``forge_additional_modules`` or the image comes from the checkpoint's own VAE."""
    with StubA1111(forge_modules=["soft.safetensors"]) as stub:
        generate("x", checkpoint="model.safetensors", vae="soft.safetensors", backend_url=stub.url,
                 flavour="a1111", storage=store.path, steps=2, timeout=30)
        assert stub.modules_used == ["soft.safetensors"]
        with pytest.raises(GenerationFailed, match="does not list the VAE 'late.safetensors'"):
            generate("x", checkpoint="model.safetensors", vae="late.safetensors", backend_url=stub.url,
                     flavour="a1111", storage=store.path, steps=2, timeout=30)
    with StubA1111() as stub:  # A1111: no sd-modules, the VAE goes as sd_vae
        generate("x", checkpoint="model.safetensors", vae="soft.safetensors", backend_url=stub.url,
                 flavour="a1111", storage=store.path, steps=2, timeout=30)
        assert stub.requests[-1][1]["override_settings"]["sd_vae"] == "soft.safetensors"
