"""The real ComfyUI 0.3.64, installed from a package zip through sdpanel and launched on
CPU, generating with the random SD1.5 checkpoint: what a user does, through the CLI and
the generation service the panel and REST API share (one ComfyUI for the whole tier)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from sdpanel.generate import get_service
from sdpanel.generate._png import decode_png, encode_png, gradient_png, image_info, read_text
from sdpanel.webuis import installed_info
from tests.fixtures.comfy_live import CKPT, LORA, VAE, Comfy
from tests.fixtures.comfy_protocol import (
    load_recorded,
    message_order,
    record_prompt,
    terminal_order,
)

TINY = ("--steps", "1", "--width", "64", "--height", "64", "--cfg", "2")


def _get(url: str) -> Any:
    async def go() -> Any:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    return asyncio.run(go())


def generate(comfy: Comfy, prompt: str, *args: str) -> dict[str, Any]:
    out = comfy.cli("generate", prompt, *TINY, "--json", *args).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def pixels(path: str) -> bytes:
    return Path(path).read_bytes()


def test_install_recorded_what_is_really_there(comfy: Comfy) -> None:
    info = installed_info(comfy.webui_dir)
    assert info and info["method"] == "package" and info["version"] == "0.3.64"
    assert "passed its start check (main.py --quick-test-for-ci --cpu)" in comfy.install_out
    assert (comfy.webui_dir / "extra_model_paths.yaml").exists()  # the store is linked


def test_object_info_lists_the_stores_models(comfy: Comfy) -> None:
    ckpts = _get(f"{comfy.url}/object_info/CheckpointLoaderSimple")["CheckpointLoaderSimple"]
    assert CKPT in ckpts["input"]["required"]["ckpt_name"][0]
    loras = _get(f"{comfy.url}/object_info/LoraLoader")["LoraLoader"]
    assert LORA in loras["input"]["required"]["lora_name"][0]
    vaes = _get(f"{comfy.url}/object_info/VAELoader")["VAELoader"]
    assert VAE in vaes["input"]["required"]["vae_name"][0]


def test_txt2img_through_the_cli_one_copy_in_the_store(comfy: Comfy) -> None:
    res = generate(comfy, "a lighthouse", "--seed", "11")
    [path] = res["images"]
    assert Path(path).parent.resolve().is_relative_to(comfy.store.resolve() / "outputs")
    info = image_info(pixels(path))
    assert (info.format, info.width, info.height) == ("png", 64, 64)
    assert "Seed: 11," in read_text(pixels(path))["parameters"]
    # ComfyUI kept no copy of its own: its output folder is the store's, and our jobs'
    # images are previews in its temp folder.
    assert "--output-directory" in comfy.record()["cmdline"]
    assert not list((comfy.webui_dir / "output").glob("*.png"))
    pngs = list((comfy.store / "outputs").rglob("*.png"))
    assert sum(1 for p in pngs if "Seed: 11," in read_text(p.read_bytes()).get("parameters", "")) == 1


def test_img2img_and_inpaint_whole_and_masked(comfy: Comfy, tmp_path: Path) -> None:
    init = tmp_path / "init.png"
    init.write_bytes(gradient_png(64, 64, 3))
    mask_rows = [bytes(255 if 16 <= x < 40 and 20 <= y < 44 else 0 for x in range(64)) for y in range(64)]
    mask = tmp_path / "mask.png"
    mask.write_bytes(encode_png(64, 64, mask_rows, channels=1))
    img2img = generate(comfy, "a lighthouse", "--init-image", str(init), "--denoise", "0.6", "--seed", "4")
    whole = generate(comfy, "a lighthouse", "--init-image", str(init), "--mask", str(mask), "--seed", "4",
                     "--inpaint-area", "whole")
    masked = generate(comfy, "a lighthouse", "--init-image", str(init), "--mask", str(mask), "--seed", "4",
                      "--inpaint-area", "only_masked", "--mask-blur", "0")
    for res in (img2img, whole, masked):
        [path] = res["images"]
        assert image_info(pixels(path)).width == 64
    assert len({pixels(r["images"][0]) for r in (img2img, whole, masked)}) == 3
    # Only masked: the pixels outside the mask box come back as they went in.
    out = _decode_rgb(pixels(masked["images"][0]))
    src = _decode_rgb(init.read_bytes())
    assert out[0][:8] == src[0][:8] and out[63][56:] == src[63][56:]


def test_lora_and_vae_override_change_the_image(comfy: Comfy) -> None:
    plain = generate(comfy, "a lighthouse", "--seed", "21")
    lora = generate(comfy, "a lighthouse", "--seed", "21", "--lora", f"{LORA}:1.0")
    vae = generate(comfy, "a lighthouse", "--seed", "21", "--vae", VAE)
    again = generate(comfy, "a lighthouse", "--seed", "21")
    images = [pixels(r["images"][0]) for r in (plain, lora, vae)]
    assert len(set(images)) == 3
    assert _decode_rgb(pixels(again["images"][0])) == _decode_rgb(images[0])  # same seed, same image
    log = "\n".join(comfy.cli("logs", "comfyui", "--lines", "2000").stdout.splitlines())
    assert "lora key not loaded" not in log  # every LoRA key reached the model
    assert f"<lora:{Path(LORA).stem}:1" in read_text(images[1])["parameters"]


def test_batch_size_and_count(comfy: Comfy) -> None:
    size = generate(comfy, "a lighthouse", "--seed", "7", "--batch-size", "2")
    count = generate(comfy, "a lighthouse", "--seed", "7", "--batch-count", "2")
    assert len(size["images"]) == 2 and len(count["images"]) == 2
    assert count["seeds"] == [7, 8]
    assert len({pixels(p) for p in size["images"] + count["images"]}) >= 3


def _service(comfy: Comfy) -> Any:
    svc = get_service(comfy.store)
    svc.refresh_backends()
    return svc


def _wait(job: Any, timeout: float = 600) -> Any:
    return job.future.result(timeout=timeout)


def test_progress_previews_and_cancel_mid_run(comfy: Comfy) -> None:
    svc = _service(comfy)
    job = svc.submit({"prompt": "a lighthouse", "checkpoint": CKPT, "steps": 3, "width": 64, "height": 64,
                      "seed": 5})
    _wait(job)
    assert job.state == "succeeded", job.error
    steps = [e.data["step"] for e in job.events.since(0) if e.kind == "progress"]
    assert steps[-1] == 3 and steps == sorted(steps)
    # The real server's preview frames arrived (new format, since we send feature_flags).
    [preview] = [e.data for e in job.events.since(0) if e.kind == "preview"]  # the newest is kept
    assert preview["image"].startswith("data:image/") and len(preview["image"]) > 100
    # Cancel: interrupt a long run after its first step; ComfyUI stops and serves the next.
    long = svc.submit({"prompt": "a lighthouse", "checkpoint": CKPT, "steps": 40, "width": 64, "height": 64})
    deadline = time.monotonic() + 600
    while long.step < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    svc.queue.cancel(long.id)
    _wait(long)
    assert long.state == "cancelled" and long.step < 40
    # ComfyUI stops at the end of the step it is in: then its queue is empty.
    deadline = time.monotonic() + 300
    while _get(f"{comfy.url}/queue")["queue_running"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _get(f"{comfy.url}/queue") == {"queue_running": [], "queue_pending": []}
    log = comfy.cli("logs", "comfyui", "--lines", "400").stdout
    assert "Processing interrupted" in log
    after = svc.submit({"prompt": "after", "checkpoint": CKPT, "steps": 1, "width": 64, "height": 64})
    _wait(after)
    assert after.state == "succeeded" and len(after.images) == 1


def test_twenty_generations_in_a_row_lose_nothing(comfy: Comfy) -> None:
    svc = _service(comfy)
    jobs = []
    for i in range(20):
        job = svc.submit({"prompt": f"run {i}", "checkpoint": CKPT, "steps": 1, "width": 64, "height": 64,
                          "cfg": 1.0, "seed": 100 + i})
        _wait(job)
        jobs.append(job)
    assert [(j.state, len(j.images)) for j in jobs] == [("succeeded", 1)] * 20, [j.error for j in jobs]


def test_real_message_order_matches_the_recording(comfy: Comfy) -> None:
    """The stub follows recorded/comfyui-0.3.64-txt2img.json; this keeps the recording true."""
    recorded = load_recorded()
    msgs = asyncio.run(record_prompt(comfy.url, recorded["graph"]))
    order = message_order(msgs, recorded["graph"])
    # After the sampler (nodes before it may come from ComfyUI's cache on a warm server):
    # executed → execution_success → executing(null), the order the backend relies on.
    assert terminal_order(order) == terminal_order(recorded["order"])
    assert {"<binary:4>", "progress:KSampler"} <= set(order)  # new-format previews, progress


def _decode_rgb(data: bytes) -> list[bytes]:
    img = decode_png(data, 1 << 24)
    return [bytes(r) for r in img.rows]
