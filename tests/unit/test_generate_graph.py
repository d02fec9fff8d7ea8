"""ComfyUI graphs built from the templates, the PNG parameters chunk, the job event log."""

from __future__ import annotations

import asyncio

from sdpanel.generate import JobRequest, LoRA, build_graph, parameters_text, read_text
from sdpanel.generate._events import JobEventLog
from sdpanel.generate._graph import mask_box
from sdpanel.generate._png import decode_png, encode_png, gradient_png, with_text


def links(graph: dict, node: str) -> dict:
    return {k: v for k, v in graph[node]["inputs"].items() if isinstance(v, list)}


def test_txt2img_graph_is_filled_and_loras_chained() -> None:
    req = JobRequest(prompt="a cat", negative_prompt="blurry", checkpoint="sd15.safetensors",
                     loras=(LoRA("a.safetensors", 0.5), LoRA("b.safetensors", 1.2)),
                     vae="vae.safetensors", steps=12, cfg=6.5, width=640, height=448, batch_size=2)
    g = build_graph(req, seed=1234)
    assert g["ckpt"]["inputs"]["ckpt_name"] == "sd15.safetensors"
    assert g["pos"]["inputs"]["text"] == "a cat" and g["neg"]["inputs"]["text"] == "blurry"
    assert g["latent"]["inputs"] == {"width": 640, "height": 448, "batch_size": 2}
    s = g["sampler"]["inputs"]
    assert (s["seed"], s["steps"], s["cfg"], s["sampler_name"]) == (1234, 12, 6.5, "euler")
    # checkpoint -> lora0 -> lora1 -> sampler / text encoders
    assert links(g, "lora0") == {"model": ["ckpt", 0], "clip": ["ckpt", 1]}
    assert links(g, "lora1") == {"model": ["lora0", 0], "clip": ["lora0", 1]}
    assert g["lora1"]["inputs"]["strength_model"] == 1.2
    assert s["model"] == ["lora1", 0] and g["pos"]["inputs"]["clip"] == ["lora1", 1]
    assert g["decode"]["inputs"]["vae"] == ["vae", 0] and g["vae"]["inputs"]["vae_name"] == "vae.safetensors"
    assert not any(isinstance(v, str) and v.startswith("$") for n in g.values() for v in n["inputs"].values())


def test_img2img_and_inpaint_graphs_use_uploaded_names() -> None:
    png = gradient_png(64, 64)
    req = JobRequest(mode="img2img", prompt="x", checkpoint="m", init_image=png, denoise=0.4,
                     width=64, height=64)
    g = build_graph(req, 1, {"init_image": "in.png"})
    assert g["load"]["inputs"]["image"] == "in.png" and g["sampler"]["inputs"]["denoise"] == 0.4
    mask = encode_png(64, 64, [bytes(255 if 20 <= x < 30 and 10 <= y < 20 else 0 for x in range(64))
                               for y in range(64)], 1)
    inp = JobRequest(mode="inpaint", prompt="x", checkpoint="m", init_image=png, mask=mask,
                     width=64, height=64, mask_blur=0)
    g = build_graph(inp, 1, {"init_image": "in.png", "mask": "m.png"})
    assert g["mask"]["inputs"] == {"image": "m.png", "channel": "red"}
    assert "blur" not in g and g["soft_mask"]["inputs"]["image"] == ["mask_image", 0]  # bypassed
    assert g["composite"]["inputs"]["destination"] == ["originals", 0]


def test_only_masked_crops_around_the_mask() -> None:
    png = gradient_png(256, 256)
    mask = encode_png(256, 256, [bytes(255 if 100 <= x < 120 and 50 <= y < 60 else 0 for x in range(256))
                                 for y in range(256)], 1)
    req = JobRequest(mode="inpaint", prompt="x", checkpoint="m", init_image=png, mask=mask, width=128,
                     height=128, inpaint_area="only_masked", only_masked_padding=8)
    x, y, w, h = mask_box(req)
    assert w == h  # grown to the job's 1:1 aspect
    assert x <= 92 and x + w >= 128 and y <= 42 and y + h >= 68
    g = build_graph(req, 7, {"init_image": "i.png", "mask": "m.png"})
    assert g["crop"]["inputs"]["x"] == x and g["composite"]["inputs"]["x"] == x
    assert g["up"]["inputs"]["width"] == 128 and g["down"]["inputs"]["width"] == w


def test_parameters_chunk_reads_like_a1111() -> None:
    req = JobRequest(prompt="a cat", negative_prompt="dog", checkpoint="dir/sd15.safetensors",
                     loras=(LoRA("style.safetensors", 0.8),), sampler="euler_ancestral",
                     scheduler="karras", steps=20, cfg=7, width=512, height=768)
    text = parameters_text(req, 123)
    assert text.splitlines()[0] == "a cat <lora:style:0.8>"
    assert text.splitlines()[1] == "Negative prompt: dog"
    assert ("Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 123, "
            "Size: 512x768, Model: sd15") in text
    png = with_text(gradient_png(8, 8), "parameters", text + " ✓")
    assert read_text(png)["parameters"].endswith("✓")  # non-Latin-1 goes to iTXt
    assert decode_png(png, 100).width == 8


def test_event_log_resumes_after_an_id_and_keeps_one_preview() -> None:
    log = JobEventLog()
    log.append("queued", {})
    for i in range(3):
        log.append("progress", {"step": i})
        log.append("preview", {"image": str(i)})
    assert [e.id for e in log.since(0)] == [1, 2, 4, 6, 7]
    assert [e.data["image"] for e in log.since(0) if e.kind == "preview"] == ["2"]
    assert [e.id for e in log.since(4)] == [6, 7]

    async def follow() -> list[int]:
        seen = []
        async for event in log.follow(2):
            seen.append(event.id)
        return seen

    async def main() -> list[int]:
        task = asyncio.create_task(follow())
        await asyncio.sleep(0.01)
        log.append("done", {})
        return await asyncio.wait_for(task, 2)

    assert asyncio.run(main()) == [4, 6, 7, 8]
    assert log.finished


def test_comfyui_preview_frames() -> None:
    import json
    import struct

    from sdpanel.generate._comfyui import parse_preview

    png = gradient_png(4, 4)
    assert parse_preview(struct.pack(">II", 1, 2) + png) == (png, "image/png")
    assert parse_preview(struct.pack(">II", 1, 1) + b"jpegdata") == (b"jpegdata", "image/jpeg")
    meta = json.dumps({"image_type": "image/webp", "node_id": "sampler"}).encode()
    assert parse_preview(struct.pack(">II", 4, len(meta)) + meta + b"webp") == (b"webp", "image/webp")
    assert parse_preview(struct.pack(">II", 3, 0) + b"text") is None  # other binary events
