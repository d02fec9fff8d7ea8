"""The built-in engine end to end: the real worker process (torch + diffusers, CPU) on a
random-weight SD1.5 checkpoint made with ComfyUI's own classes, through the same queue
and client as the WebUI backends, at 64x64 with 1-2 steps.

One store (so one service and one worker) for the module: the model stays loaded between
the tests' jobs, as it does for a user, and each test still checks what it promises."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("diffusers", reason="the built-in engine needs sdpanel[engine]")

from PIL import Image  # noqa: E402

from sdpanel.generate import BuiltinBackend, GenerationFailed, generate, get_service, read_text  # noqa: E402
from sdpanel.generate._png import encode_png, gradient_png  # noqa: E402
from sdpanel.storage import StorageRoot  # noqa: E402
from tests.fixtures.counting_listener import CountingListener
from tests.fixtures.sd15_checkpoint import place, sd15_checkpoint, sd15_lora, sd15_vae  # noqa: E402
from tests.fixtures.waiting import wait_for  # noqa: E402

CKPT = "sd15-random.safetensors"


@pytest.fixture(scope="module")
def net() -> Iterator[CountingListener]:
    # Every HTTP(S) client of the worker is pointed at it as a proxy: any attempt to reach
    # a hub shows up as a connection.
    proxy = CountingListener()
    saved = {k: os.environ.get(k) for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")}
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        os.environ[key] = proxy.url
    os.environ.pop("NO_PROXY", None)
    yield proxy
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    proxy.sock.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, net: CountingListener) -> Iterator[StorageRoot]:
    root = StorageRoot.at(tmp_path_factory.mktemp("engine") / "store").ensure()
    place(sd15_checkpoint(), root.kind_dir("checkpoints") / CKPT)
    place(sd15_vae(), root.kind_dir("vae") / "other-vae.safetensors")
    place(sd15_lora(), root.kind_dir("loras") / "style.safetensors")
    yield root
    service = get_service(root.path)
    backend = service.builtin()
    if backend is not None:
        service.runtime.submit(backend.close()).wait(30)


def run(store: StorageRoot, **params: object):
    return generate(str(params.pop("prompt", "a red fox")), checkpoint=params.pop("checkpoint", CKPT),
                    flavour="builtin",
                    storage=store.path, timeout=600, steps=params.pop("steps", 1), seed=params.pop("seed", 7),
                    **params)


def pixels(path: Path) -> Image.Image:
    return Image.open(io.BytesIO(path.read_bytes())).convert("RGB")


def mask_png(w: int, h: int, box: tuple[int, int, int, int]) -> bytes:
    x0, y0, x1, y1 = box
    return encode_png(w, h, [bytes(255 if x0 <= x < x1 and y0 <= y < y1 else 0 for x in range(w))
                             for y in range(h)], 1)


def engine_log(store: StorageRoot) -> str:
    return (store.path / ".sdpanel" / "logs" / "engine.log").read_text(errors="replace")


def test_txt2img_batches_and_seeds(store: StorageRoot, net: CountingListener) -> None:
    events: list[str] = []
    result = run(store, width=64, height=64, batch_size=2, batch_count=2, seed=41,
                 on_event=lambda e: events.append(e.kind))
    assert len(result.images) == 4 and result.seeds == [41, 41, 42, 42]
    for path, seed in zip(result.images, result.seeds, strict=True):
        assert pixels(path).size == (64, 64)
        params = read_text(path.read_bytes())["parameters"]
        assert f"Seed: {seed}" in params and "Size: 64x64" in params and "Model: sd15-random" in params
    assert result.job.backend == "builtin"
    assert "progress" in events and "preview" in events  # per step, over the same events
    assert net.connections == 0  # loading never asked a hub
    # The same seed gives the same picture; another seed another one.
    again = run(store, width=64, height=64, seed=41)
    assert pixels(again.images[0]).tobytes() == pixels(result.images[0]).tobytes()
    assert pixels(result.images[2]).tobytes() != pixels(result.images[0]).tobytes()


def test_img2img_returns_the_asked_size(store: StorageRoot) -> None:
    result = run(store, mode="img2img", init_image=gradient_png(64, 64), width=96, height=64,
                 denoise=0.6, steps=2)
    assert [pixels(p).size for p in result.images] == [(96, 64)]
    assert "Denoising strength: 0.6" in read_text(result.images[0].read_bytes())["parameters"]


def test_inpaint_leaves_pixels_outside_the_mask_unchanged(store: StorageRoot) -> None:
    source = gradient_png(64, 64, seed=300)
    box = (16, 16, 40, 40)
    result = run(store, mode="inpaint", init_image=source, mask=mask_png(64, 64, box), mask_blur=2,
                 denoise=1.0, steps=2)
    out, src = pixels(result.images[0]), Image.open(io.BytesIO(source)).convert("RGB")
    assert out.size == (64, 64)
    margin = 8  # the 2 px blur reaches a few pixels past the box, never 8
    changed_outside = [(x, y) for y in range(64) for x in range(64)
                       if not (box[0] - margin <= x < box[2] + margin and box[1] - margin <= y < box[3] + margin)
                       and out.getpixel((x, y)) != src.getpixel((x, y))]
    assert changed_outside == []
    inside = [(x, y) for y in range(box[1], box[3]) for x in range(box[0], box[2])]
    assert sum(out.getpixel(p) != src.getpixel(p) for p in inside) > len(inside) // 2  # repainted


def test_lora_and_vae_override_change_the_image_and_the_model_stays_loaded(store: StorageRoot) -> None:
    base = pixels(run(store, width=64, height=64, seed=5).images[0]).tobytes()
    lora = pixels(run(store, width=64, height=64, seed=5,
                      loras=[{"name": "style.safetensors", "weight": 1.0}]).images[0]).tobytes()
    vae = pixels(run(store, width=64, height=64, seed=5, vae="other-vae.safetensors").images[0]).tobytes()
    assert len({base, lora, vae}) == 3
    # Back to the plain checkpoint: the LoRA and the VAE were swapped out again.
    assert pixels(run(store, width=64, height=64, seed=5).images[0]).tobytes() == base
    assert engine_log(store).count(f"loaded {CKPT}") == 1  # one load for all of the above


def test_sampler_and_scheduler_from_the_comfyui_list(store: StorageRoot) -> None:
    ok = run(store, width=64, height=64, sampler="dpmpp_2m", scheduler="karras", steps=2)
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in read_text(ok.images[0].read_bytes())["parameters"]
    with pytest.raises(GenerationFailed) as failed:
        run(store, width=64, height=64, sampler="dpm_adaptive")
    assert "'dpm_adaptive' has no equivalent in the built-in engine: pick one of euler" in str(failed.value)


def test_cancel_stops_within_one_step(store: StorageRoot) -> None:
    service = get_service(store.path)
    backend = service.use_builtin()
    job = service.submit({"prompt": "long", "checkpoint": CKPT, "steps": 40, "width": 64, "height": 64})
    wait_for(lambda: job.step >= 2, timeout=300, what="two steps of the long job")
    backend.last_cancel = (-1, -1)
    service.queue.cancel(job.id)
    assert job.future.result(120).state == "cancelled"
    stopped, seen = backend.last_cancel  # as the worker reported it
    assert seen >= 2 and stopped - seen <= 1


def test_corrupt_checkpoints_fail_with_one_sentence(store: StorageRoot, tmp_path: Path) -> None:
    folder = store.kind_dir("checkpoints")
    (folder / "garbage.safetensors").write_bytes(os.urandom(4096))
    with (folder / "truncated.safetensors").open("wb") as f, sd15_checkpoint().open("rb") as src:
        f.write(src.read(20 * 1024**2))
    # Looks like SD1.5 from its header, but holds two tiny tensors: fails inside the worker.
    header = json.dumps({
        "model.diffusion_model.input_blocks.0.0.weight": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
        "cond_stage_model.transformer.text_model.final_layer_norm.weight":
            {"dtype": "F16", "shape": [2], "data_offsets": [4, 8]}}).encode()
    (folder / "hollow.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    for name, words in (("garbage.safetensors", "is not a safetensors file"),
                        ("truncated.safetensors", "is truncated"),
                        ("hollow.safetensors", "could not be loaded as an sd15 checkpoint")):
        with pytest.raises(GenerationFailed) as failed:
            run(store, checkpoint=name)
        message = str(failed.value)
        assert words in message and name in message and message.count(". ") == 0
        assert "download it again" in message


def test_worker_death_is_reported_and_the_next_job_restarts_it(store: StorageRoot) -> None:
    service = get_service(store.path)
    backend = service.use_builtin()
    assert isinstance(backend, BuiltinBackend)
    job = service.submit({"prompt": "doomed", "checkpoint": CKPT, "steps": 40, "width": 64, "height": 64})
    wait_for(lambda: job.step >= 1 and backend.pid is not None, timeout=300, what="the job running")
    first = backend.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)  # what the kernel's OOM killer does
    assert job.future.result(60).state == "failed"
    assert "was killed by signal SIGKILL (probably out of memory)" in job.error
    assert "the next job starts a new one" in job.error
    after = run(store, width=64, height=64)
    assert pixels(after.images[0]).size == (64, 64)
    assert backend.pid not in (None, first) and backend.restarts == 1


def test_cli_uses_the_builtin_engine_when_no_webui_runs(store: StorageRoot, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "SDPANEL_STORAGE": str(store.path), "SDPANEL_PLATFORM": "local"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sdpanel", "generate", *args], cwd=root, env=env,
                              capture_output=True, text=True, timeout=900)

    # No --flavour and no WebUI: the built-in engine is chosen by itself.
    done = cli("a lighthouse", "--checkpoint", CKPT, "--width", "64", "--height", "64", "--steps", "1",
               "--seed", "3", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "running on builtin (seed 3)" in done.stderr
    out = tmp_path / "out" / Path(done.stdout.split()[0]).name
    assert pixels(out).size == (64, 64)
    (store.kind_dir("checkpoints") / "broken.safetensors").write_bytes(b"\xff" * 64)
    bad = cli("x", "--flavour", "builtin", "--checkpoint", "broken.safetensors")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == (
        "error: generation failed: broken.safetensors is not a safetensors file (its header length "
        "is impossible): download it again or pick another file.")


def test_a_webui_starting_makes_the_engine_free_its_memory(store: StorageRoot) -> None:
    import json

    import psutil

    from sdpanel.runtime import StateEvent
    from tests.fixtures.stub_comfyui import StubComfyUI

    service = get_service(store.path)
    backend = service.use_builtin()
    run(store, width=64, height=64)  # a worker with the model loaded
    worker = backend.pid
    assert worker is not None
    seen: list[StateEvent] = []
    unsubscribe = service.runtime.bus.subscribe(
        lambda e: seen.append(e) if isinstance(e, StateEvent) and e.state == "unloaded" else None)
    record = store.state_path("pids", "webui-comfyui.json")
    with StubComfyUI() as stub:
        # As the process manager records a WebUI it started (our own pid: alive).
        record.write_text(json.dumps({"name": "comfyui", "flavour": "comfyui", "port": stub.port,
                                      "pid": os.getpid(), "cmdline": psutil.Process().cmdline()}))
        try:
            service.refresh_backends()
            wait_for(lambda: not psutil.pid_exists(worker) or psutil.Process(worker).status() == "zombie",
                     timeout=60, what="the worker to exit")
            wait_for(lambda: seen, timeout=10, what="the unloaded event")
            assert "comfyui:" in seen[0].data["message"]
            assert "the built-in engine unloaded its model to free GPU memory" in seen[0].data["message"]
        finally:
            record.unlink()
            unsubscribe()
            service.refresh_backends()
