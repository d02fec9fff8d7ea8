"""Each mode through each backend, end to end, with the Python client against the stub
ComfyUI and stub A1111 servers (real HTTP, WebSocket and PNGs on loopback)."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdpanel.generate import GenerationFailed, agenerate, generate, get_service, read_text
from sdpanel.generate._png import decode_png, encode_png, gradient_png, image_info
from sdpanel.storage import StorageRoot
from tests.fixtures.stub_a1111 import StubA1111
from tests.fixtures.stub_comfyui import StubComfyUI

FLAVOURS = ("comfyui", "a1111")


@pytest.fixture
def store(tmp_path: Path) -> StorageRoot:
    root = StorageRoot.at(tmp_path / "store").ensure()
    (root.kind_dir("checkpoints") / "model.safetensors").write_bytes(b"x")
    (root.kind_dir("loras") / "style.safetensors").write_bytes(b"x")
    return root


def start_stub(flavour: str, step_delay: float = 0.0) -> StubComfyUI | StubA1111:
    if flavour == "comfyui":
        return StubComfyUI(step_delay=step_delay, loras=["style.safetensors"]).start()
    return StubA1111(step_delay=step_delay).start()


@pytest.fixture(params=FLAVOURS)
def stub(request: pytest.FixtureRequest) -> Iterator[StubComfyUI | StubA1111]:
    server = start_stub(request.param)
    server.flavour = request.param  # type: ignore[union-attr]
    yield server
    server.stop()


def mask_png(w: int, h: int) -> bytes:
    return encode_png(w, h, [bytes(255 if w // 4 <= x < w // 2 and h // 4 <= y < h // 2 else 0
                                   for x in range(w)) for y in range(h)], 1)


def run(stub: StubComfyUI | StubA1111, store: StorageRoot, **params: object):
    return generate(params.pop("prompt", "a red fox"), checkpoint="model.safetensors",
                    backend_url=stub.url, flavour=stub.flavour, storage=store.path,  # type: ignore[union-attr]
                    timeout=30, **params)


def test_txt2img(stub, store: StorageRoot) -> None:
    result = run(stub, store, width=320, height=192, steps=4, seed=77, batch_size=2,
                 loras=[{"name": "style.safetensors", "weight": 0.7}], negative_prompt="blurry")
    assert result.seed == 77 and len(result.images) == 2
    for path in result.images:
        png = path.read_bytes()
        assert image_info(png).width == 320 and image_info(png).height == 192
        assert decode_png(png, 10**6).rows  # a real, decodable image
        params = read_text(png)["parameters"]
        assert params.startswith("a red fox <lora:style:0.7>\nNegative prompt: blurry\nSteps: 4, ")
        assert "Seed: 77," in params and "Size: 320x192" in params and "Model: model" in params
    assert result.images[0].parent == store.outputs_dir / time.strftime("%Y-%m-%d")
    if isinstance(stub, StubComfyUI):
        graph = stub.prompts[-1]
        assert graph["lora0"]["inputs"]["lora_name"] == "style.safetensors"
        assert graph["sampler"]["inputs"]["seed"] == 77
    else:
        endpoint, body = stub.requests[-1]
        assert endpoint == "txt2img" and body["prompt"].endswith("<lora:style:0.7>")
        assert body["override_settings"]["sd_model_checkpoint"] == "model.safetensors"


def test_img2img(stub, store: StorageRoot) -> None:
    init = gradient_png(200, 136, 5)
    result = run(stub, store, mode="img2img", init_image=init, denoise=0.5, steps=4)
    assert result.seed >= 0
    info = image_info(result.images[0].read_bytes())
    assert (info.width, info.height) == (200, 136)  # 200x136 are multiples of 8: kept
    assert "Denoising strength: 0.5" in read_text(result.images[0].read_bytes())["parameters"]
    if isinstance(stub, StubComfyUI):
        assert list(stub.uploads.values()) == [init]
        assert stub.prompts[-1]["sampler"]["inputs"]["denoise"] == 0.5
    else:
        _, body = stub.requests[-1]
        assert base64.b64decode(body["init_images"][0]) == init and body["denoising_strength"] == 0.5


def test_comfyui_mask_blur_stays_in_its_range(store: StorageRoot) -> None:
    with StubComfyUI() as stub:
        result = generate("x", checkpoint="model.safetensors", backend_url=stub.url, storage=store.path,
                          mode="inpaint", init_image=gradient_png(64, 64), mask=mask_png(64, 64),
                          mask_blur=64, steps=2, timeout=30)
        assert stub.prompts[-1]["blur"]["inputs"]["blur_radius"] == 31
    assert result.images


@pytest.mark.parametrize("area", ["whole", "only_masked"])
def test_inpaint(stub, store: StorageRoot, tmp_path: Path, area: str) -> None:
    init, mask = gradient_png(128, 96, 9), mask_png(128, 96)
    (tmp_path / "in.png").write_bytes(init)
    result = run(stub, store, mode="inpaint", init_image=tmp_path / "in.png", mask=mask,
                 mask_blur=6, inpaint_area=area, steps=3)
    info = image_info(result.images[0].read_bytes())
    assert (info.width, info.height) == (128, 96)
    assert "Mask blur: 6" in read_text(result.images[0].read_bytes())["parameters"]
    if isinstance(stub, StubComfyUI):
        assert sorted(stub.uploads.values(), key=len) == sorted([init, mask], key=len)
        g = stub.prompts[-1]
        assert g["blur"]["inputs"]["blur_radius"] == 6
        assert ("crop" in g) == (area == "only_masked")
    else:
        _, body = stub.requests[-1]
        assert base64.b64decode(body["mask"]) == mask and body["mask_blur"] == 6
        assert body["inpaint_full_res"] is (area == "only_masked") and body["inpainting_fill"] == 1


def test_package_is_callable(store: StorageRoot) -> None:
    import sdpanel.generate

    with StubComfyUI() as stub:
        result = sdpanel.generate("callable", checkpoint="model.safetensors", backend_url=stub.url,
                                  storage=store.path, steps=2, timeout=30)
    assert result.images[0].is_file()


def test_async_client(stub, store: StorageRoot) -> None:
    import asyncio

    result = asyncio.run(agenerate("async", checkpoint="model.safetensors", backend_url=stub.url,
                                   flavour=stub.flavour, storage=store.path, steps=2))
    assert result.images and result.images[0].is_file()


def test_progress_and_previews_stream(store: StorageRoot) -> None:
    with StubComfyUI(step_delay=0.01) as stub:
        events = []
        generate("fox", checkpoint="model.safetensors", backend_url=stub.url, flavour="comfyui",
                 storage=store.path, steps=6, timeout=30, on_event=events.append)
    kinds = [e.kind for e in events]
    assert kinds[0] == "queued" and kinds[1] == "running" and kinds[-1] == "done"
    steps = [e.data["step"] for e in events if e.kind == "progress"]
    assert steps == sorted(steps) and steps[-1] == 6
    preview = next(e for e in events if e.kind == "preview")
    assert preview.data["image"].startswith("data:image/png;base64,")
    with StubA1111(step_delay=0.05) as stub:
        events = []
        get_service(store.path).use_backend(stub.url, "a1111").poll_interval = 0.05
        generate("fox", checkpoint="model.safetensors", backend_url=stub.url, flavour="a1111",
                 storage=store.path, steps=10, timeout=30, on_event=events.append)
    assert [e for e in events if e.kind == "progress"] and [e for e in events if e.kind == "preview"]


def test_comfyui_errors_are_surfaced(store: StorageRoot) -> None:
    with StubComfyUI(checkpoints=["other.safetensors"]) as stub:
        with pytest.raises(GenerationFailed, match="ComfyUI refused the job: Prompt outputs failed "
                           "validation.*ckpt_name: 'model.safetensors' not in"):
            generate("x", checkpoint="model.safetensors", backend_url=stub.url, storage=store.path, timeout=30)
        stub.models["checkpoints"].append("model.safetensors")
        with pytest.raises(GenerationFailed, match=r"failed in node sampler \(KSampler\): RuntimeError: "
                           "stub failure requested"):
            generate("x [[error]]", checkpoint="model.safetensors", backend_url=stub.url,
                     storage=store.path, timeout=30)
        # The queue goes on after a failed job.
        assert generate("x", checkpoint="model.safetensors", backend_url=stub.url,
                        storage=store.path, timeout=30).images


def _wait_running(job, steps_done: int = 1) -> None:
    deadline = time.monotonic() + 10
    while (job.state != "running" or job.step < steps_done) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.state == "running"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_cancel_while_queued_and_while_running(flavour: str, store: StorageRoot) -> None:
    stub = start_stub(flavour, step_delay=0.05)
    try:
        service = get_service(store.path)
        backend = service.use_backend(stub.url, flavour)
        if flavour == "a1111":
            backend.poll_interval = 0.05  # type: ignore[attr-defined]
        running = service.submit({"prompt": "long", "checkpoint": "model.safetensors", "steps": 100})
        queued = service.submit({"prompt": "waiting", "checkpoint": "model.safetensors", "steps": 2})
        assert service.queue.cancel(queued.id).state == "cancelled"
        _wait_running(running, 2)
        t0 = time.monotonic()
        service.queue.cancel(running.id)
        assert running.future.result(10).state == "cancelled"
        assert time.monotonic() - t0 < 3  # interrupted, not run to the end (100 x 50 ms)
        assert stub.interrupts == 1
        if isinstance(stub, StubComfyUI):
            assert len(stub.prompts) == 1  # the cancelled queued job never reached ComfyUI
        else:
            assert len(stub.requests) == 1
        # The WebUI is usable again right away.
        after = service.submit({"prompt": "after", "checkpoint": "model.safetensors", "steps": 2})
        assert after.future.result(10).state == "succeeded"
    finally:
        stub.stop()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_backend_crash_mid_job_fails_clearly_and_queue_goes_on(flavour: str, store: StorageRoot) -> None:
    dying, healthy = start_stub(flavour, step_delay=0.02), start_stub(flavour)
    dying.crash_at_step = 3
    try:
        service = get_service(store.path)
        service.use_backend(dying.url, flavour)
        job = service.submit({"prompt": "x", "checkpoint": "model.safetensors", "steps": 10})
        assert job.future.result(15).state == "failed"
        assert "stopped answering mid-job" in job.error and dying.url in job.error
        assert "relaunch" in job.error
        service.use_backend(healthy.url, flavour)
        nxt = service.submit({"prompt": "y", "checkpoint": "model.safetensors", "steps": 2})
        assert nxt.future.result(15).state == "succeeded"
        assert nxt.backend is not None and str(healthy.port) in nxt.backend
        # The dead one still fails fast and clearly when it is the only choice left.
        service.queue.remove_backend(nxt.backend)
        last = service.submit({"prompt": "z", "checkpoint": "model.safetensors", "steps": 2})
        assert last.future.result(15).state == "failed" and dying.url in last.error
    finally:
        dying.stop()
        healthy.stop()


def test_backends_take_turns(store: StorageRoot) -> None:
    a, b = StubComfyUI(step_delay=0.01).start(), StubA1111(step_delay=0.01).start()
    try:
        service = get_service(store.path)
        service.use_backend(a.url, "comfyui")
        service.use_backend(b.url, "a1111")
        jobs = [service.submit({"prompt": f"j{i}", "checkpoint": "model.safetensors", "steps": 3})
                for i in range(6)]
        for job in jobs:
            assert job.future.result(30).state == "succeeded"
        assert len(a.prompts) >= 2 and len(b.requests) >= 2
    finally:
        a.stop()
        b.stop()


def test_threads_left_clean() -> None:
    names = [t.name for t in threading.enumerate()]
    assert not [n for n in names if n.startswith("Stub")]


def test_discovered_webuis_come_and_go(store: StorageRoot) -> None:
    import json
    import os

    import psutil

    with StubComfyUI() as stub:
        record = store.state_path("pids", "webui-comfyui.json")
        record.write_text(json.dumps({"name": "comfyui", "pid": os.getpid(), "port": stub.port,
                                      "cmdline": psutil.Process().cmdline()}))
        service = get_service(store.path)
        assert [b.flavour for b in service.refresh_backends()] == ["comfyui"]
        job = service.submit({"prompt": "found", "checkpoint": "model.safetensors", "steps": 2})
        assert job.future.result(10).state == "succeeded"
        record.unlink()  # the process manager drops the record when the WebUI stops
        assert service.refresh_backends() == []
