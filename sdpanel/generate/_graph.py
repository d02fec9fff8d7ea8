"""ComfyUI API-format graphs from the templates in ``configs/comfyui/``.

A template is a graph whose ``"$name"`` strings are filled from the job; LoRA loaders and
a VAE loader are spliced in by rewiring the links that leave the checkpoint loader.
"""

from __future__ import annotations

import copy
from typing import Any

from sdpanel._configs import load_config

from ._jobs import JobRequest
from ._png import decode_png
from ._validate import MAX_IMAGE_PIXELS

Graph = dict[str, dict[str, Any]]
CKPT, MODEL, CLIP, VAE = "ckpt", 0, 1, 2
OUTPUT_NODE = "save"
COMFY_MAX_BLUR = 31


def template_name(req: JobRequest) -> str:
    if req.mode == "inpaint" and req.inpaint_area == "only_masked":
        return "inpaint_masked"
    return req.mode


def load_template(name: str) -> Graph:
    data = load_config(f"comfyui/{name}.json")
    return {k: copy.deepcopy(v) for k, v in data.items() if not k.startswith("$")}


def _fill(value: Any, params: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        key = value[1:]
        if key not in params:
            raise KeyError(f"ComfyUI template needs parameter {key!r}")
        return params[key]
    if isinstance(value, dict):
        return {k: _fill(v, params) for k, v in value.items()}
    return value


def _rewire(graph: Graph, old: list[Any], new: list[Any], skip: set[str]) -> None:
    """Point every input that links to output ``old`` at ``new`` instead."""
    for node_id, node in graph.items():
        if node_id in skip:
            continue
        for key, value in node["inputs"].items():
            if value == old:
                node["inputs"][key] = list(new)


def bypass(graph: Graph, node_id: str, input_name: str) -> None:
    """Remove a node that passes ``input_name`` through (output 0) unchanged."""
    source = graph[node_id]["inputs"][input_name]
    del graph[node_id]
    _rewire(graph, [node_id, 0], source, set())


def mask_box(req: JobRequest) -> tuple[int, int, int, int]:
    """(x, y, width, height) around the mask's painted pixels plus the padding, grown to the
    job's aspect ratio (as A1111 does) and kept inside the image."""
    assert req.mask is not None
    img = decode_png(req.mask, MAX_IMAGE_PIXELS)
    step = img.channels * (2 if img.bit_depth == 16 else 1)
    ys = [y for y, row in enumerate(img.rows) if any(row[0::step])] if img.direct else []
    if not ys:  # unreadable as a mask here: inpaint the whole picture at full size
        return 0, 0, img.width, img.height
    xs = [x for y in ys for x in range(img.width) if img.rows[y][x * step]]
    pad = req.only_masked_padding
    x0, x1 = max(0, min(xs) - pad), min(img.width, max(xs) + 1 + pad)
    y0, y1 = max(0, ys[0] - pad), min(img.height, ys[-1] + 1 + pad)
    w, h = x1 - x0, y1 - y0
    ratio = req.width / req.height
    if w / h < ratio:  # too narrow: widen around the centre
        w = min(img.width, round(h * ratio))
    else:
        h = min(img.height, round(w / ratio))
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    x = min(max(0, cx - w // 2), img.width - w)
    y = min(max(0, cy - h // 2), img.height - h)
    return x, y, w, h


def build_graph(req: JobRequest, seed: int, images: dict[str, str] | None = None) -> Graph:
    """The graph for one run of ``req`` (one batch) with ``seed``; ``images`` maps
    ``init_image`` / ``mask`` to the names ComfyUI gave the uploads."""
    params: dict[str, Any] = {
        "checkpoint": req.checkpoint, "prompt": req.prompt, "negative_prompt": req.negative_prompt,
        "width": req.width, "height": req.height, "batch_size": req.batch_size, "seed": seed,
        "steps": req.steps, "cfg": req.cfg, "sampler": req.sampler, "scheduler": req.scheduler,
        # ComfyUI's ImageBlur takes a radius of 1..31 (A1111 allows up to 64).
        "denoise": req.denoise, "mask_blur": min(req.mask_blur, COMFY_MAX_BLUR), **(images or {}),
    }
    name = template_name(req)
    if name == "inpaint_masked":
        x, y, w, h = mask_box(req)
        params.update(crop_x=x, crop_y=y, crop_width=w, crop_height=h)
    graph: Graph = _fill(load_template(name), params)
    if "blur" in graph and req.mask_blur == 0:  # ImageBlur's radius starts at 1
        bypass(graph, "blur", "image")
    # LoRAs: a chain of LoraLoader nodes between the checkpoint and its users.
    model, clip = [CKPT, MODEL], [CKPT, CLIP]
    for i, lora in enumerate(req.loras):
        node_id = f"lora{i}"
        graph[node_id] = {"class_type": "LoraLoader", "inputs": {
            "model": model, "clip": clip, "lora_name": lora.name,
            "strength_model": lora.weight, "strength_clip": lora.weight}}
        model, clip = [node_id, 0], [node_id, 1]
    chain = {f"lora{i}" for i in range(len(req.loras))}
    if req.loras:
        _rewire(graph, [CKPT, MODEL], model, chain)
        _rewire(graph, [CKPT, CLIP], clip, chain)
    if req.vae:
        graph["vae"] = {"class_type": "VAELoader", "inputs": {"vae_name": req.vae}}
        _rewire(graph, [CKPT, VAE], ["vae", 0], {"vae"})
    return graph
