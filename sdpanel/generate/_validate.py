"""Validation of a generation request: every bad field is reported at once, one message
each, so a form (or a REST client) can mark them all in one round trip."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from sdpanel._configs import load_config
from sdpanel.storage import StorageRoot

from ._jobs import MODES, JobRequest, LoRA
from ._png import ImageError, decode_png, image_info

MIN_SIZE, MAX_SIZE = 64, 4096
MAX_STEPS = 150
MAX_CFG = 30.0
MAX_SEED = 2**32 - 1
MAX_BATCH_SIZE, MAX_BATCH_COUNT = 8, 16
MAX_IMAGE_PIXELS = 4096 * 4096  # bigger is almost surely a decompression bomb or a mistake
MAX_IMAGE_BYTES = 32 * 1024**2
MAX_PROMPT = 10_000
FIELDS = frozenset(JobRequest.__dataclass_fields__)


class ValidationError(ValueError):
    """``errors`` maps each bad field to one message saying what is wrong and how to fix it."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("invalid generation request: " +
                         "; ".join(f"{k}: {v}" for k, v in self.errors.items()))


def samplers() -> dict[str, str]:
    return dict(load_config("comfyui/samplers.json")["samplers"])


def schedulers() -> dict[str, str]:
    return dict(load_config("comfyui/samplers.json")["schedulers"])


def _canonical(name: str, table: dict[str, str]) -> str | None:
    """Accept ComfyUI's name or A1111's label (any case); return ComfyUI's name."""
    low = name.strip().lower()
    for comfy, a1111 in table.items():
        if low in (comfy, a1111.lower()):
            return comfy
    return None


def decode_image_field(value: Any) -> bytes:
    """bytes, base64 text, or a ``data:image/...;base64,`` URL → bytes."""
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    elif isinstance(value, str):
        text = value.split(",", 1)[1] if value.startswith("data:") else value
        if len(text) > MAX_IMAGE_BYTES * 4 // 3 + 4:
            raise ImageError(f"image is over {MAX_IMAGE_BYTES // 1024**2} MiB")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ImageError("not valid base64 (send the file's bytes base64-encoded, "
                             "or a data: URL)") from None
    else:
        raise ImageError("expected base64 text or bytes")
    if len(raw) > MAX_IMAGE_BYTES:
        raise ImageError(f"image is over {MAX_IMAGE_BYTES // 1024**2} MiB")
    return raw


def check_image(raw: bytes, *, png_only: bool = False) -> tuple[int, int]:
    """Size of a usable image; refuses bombs from the header, then decodes (PNG) or checks
    the structure (JPEG, WebP) so a truncated upload fails here with a clear message."""
    info = image_info(raw)
    if png_only and info.format != "png":
        raise ImageError(f"must be a PNG (got {info.format.upper()}); masks need lossless pixels")
    if info.width == 0 or info.height == 0:
        raise ImageError("image has zero size")
    if info.width * info.height > MAX_IMAGE_PIXELS or max(info.width, info.height) > 2 * MAX_SIZE:
        raise ImageError(f"image is {info.width}x{info.height} pixels, over the limit of "
                         f"{MAX_IMAGE_PIXELS} pixels ({MAX_SIZE}x{MAX_SIZE}); downscale it first")
    if info.format == "png":
        decode_png(raw, MAX_IMAGE_PIXELS)
    return info.width, info.height


def _model_exists(store: StorageRoot, kind: str, name: str) -> str | None:
    """None when ``name`` is a file under the kind's folder, else the error message."""
    rel = PurePosixPath(name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or not name.strip():
        return f"{name!r} is not a file name inside the store's {kind} folder"
    folder = store.kind_dir(kind)
    path = folder / Path(*rel.parts)
    if path.is_file() and store.contains(path):
        return None
    have = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.endswith(
        (".json", ".png", ".jpg", ".jpeg", ".webp", ".part"))) if folder.is_dir() else []
    hint = f"; available: {', '.join(have[:10])}" if have else f"; {folder} has none: download one first"
    return f"{name!r} is not in the store{hint}"


def _number(data: Mapping[str, Any], key: str, default: Any, lo: float, hi: float,
            errors: dict[str, str], integer: bool = True) -> Any:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not float(value).is_integer()):
        errors[key] = f"must be {'a whole number' if integer else 'a number'} between {lo:g} and {hi:g}"
        return default
    if not lo <= value <= hi:
        errors[key] = f"{value:g} is out of range: use {lo:g} to {hi:g}"
        return default
    return int(value) if integer else float(value)


def _loras(value: Any, store: StorageRoot | None, errors: dict[str, str]) -> tuple[LoRA, ...]:
    if value in (None, ""):
        return ()
    if not isinstance(value, list | tuple):
        errors["loras"] = 'must be a list like [{"name": "x.safetensors", "weight": 0.8}]'
        return ()
    out, problems = [], []
    for i, item in enumerate(value):
        if isinstance(item, str):  # "name.safetensors:0.8" shorthand (CLI)
            name, _, w = item.rpartition(":") if ":" in item else (item, "", "1")
            item = {"name": name, "weight": w}
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            problems.append(f"#{i + 1} needs a name")
            continue
        try:
            weight = float(item.get("weight", 1.0))
        except (TypeError, ValueError):
            problems.append(f"{item['name']}: weight must be a number")
            continue
        if not -5.0 <= weight <= 5.0:
            problems.append(f"{item['name']}: weight {weight:g} is out of range -5..5")
            continue
        missing = _model_exists(store, "loras", item["name"]) if store else None
        if missing:
            problems.append(missing)
            continue
        out.append(LoRA(item["name"], weight))
    if problems:
        errors["loras"] = "; ".join(problems)
    return tuple(out)


def validate_request(data: Mapping[str, Any], store: StorageRoot | None = None) -> JobRequest:
    """Build a :class:`JobRequest` from user data or raise :class:`ValidationError` with
    every problem. ``store`` given: the checkpoint, VAE and LoRAs must exist in it."""
    errors: dict[str, str] = {}
    for key in sorted(set(data) - FIELDS):
        errors[key] = "unknown field (check the spelling; see GET /sdpanel/api/openapi.json)"
    mode = data.get("mode", "txt2img")
    if mode not in MODES:
        errors["mode"] = f"{mode!r} is not a mode: use one of {', '.join(MODES)}"
        mode = "txt2img"

    def text(key: str, required: bool = False) -> str:
        value = data.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            errors[key] = "must be text"
            return ""
        if len(value) > MAX_PROMPT:
            errors[key] = f"is {len(value)} characters long, over the limit of {MAX_PROMPT}"
        elif required and not value.strip():
            errors[key] = "is empty: " + ("describe the image to generate" if key == "prompt"
                                          else f"choose a {key}")
        return value

    prompt, negative = text("prompt", required=True), text("negative_prompt")
    checkpoint, vae = text("checkpoint", required=True), text("vae")
    for key, kind, name in (("checkpoint", "checkpoints", checkpoint), ("vae", "vae", vae)):
        if store and name and key not in errors and (msg := _model_exists(store, kind, name)):
            errors[key] = msg
    loras = _loras(data.get("loras"), store, errors)

    names: dict[str, str] = {}
    for key, table in (("sampler", samplers()), ("scheduler", schedulers())):
        raw = data.get(key, "euler" if key == "sampler" else "normal")
        found = _canonical(raw, table) if isinstance(raw, str) else None
        if found is None:
            errors[key] = f"{raw!r} is not a known {key}: use one of {', '.join(table)}"
        names[key] = found or next(iter(table))
    sampler, scheduler = names["sampler"], names["scheduler"]

    steps = _number(data, "steps", 20, 1, MAX_STEPS, errors)
    cfg = _number(data, "cfg", 7.0, 0, MAX_CFG, errors, integer=False)
    seed = _number(data, "seed", -1, -1, MAX_SEED, errors)
    batch_size = _number(data, "batch_size", 1, 1, MAX_BATCH_SIZE, errors)
    batch_count = _number(data, "batch_count", 1, 1, MAX_BATCH_COUNT, errors)
    denoise = _number(data, "denoise", 0.75, 0, 1, errors, integer=False)
    mask_blur = _number(data, "mask_blur", 4, 0, 64, errors)
    padding = _number(data, "only_masked_padding", 32, 0, 256, errors)
    priority = _number(data, "priority", 0, -100, 100, errors)
    area = data.get("inpaint_area", "whole")
    if area not in ("whole", "only_masked"):
        errors["inpaint_area"] = f"{area!r} is not an inpaint area: use whole or only_masked"
        area = "whole"

    init = mask = None
    init_size: tuple[int, int] | None = None
    if mode in ("img2img", "inpaint"):
        if data.get("init_image") in (None, ""):
            errors["init_image"] = f"{mode} needs an input image"
        else:
            try:
                init = decode_image_field(data["init_image"])
                init_size = check_image(init)
            except ImageError as exc:
                errors["init_image"] = str(exc)
    if mode == "inpaint":
        if data.get("mask") in (None, ""):
            errors["mask"] = "inpaint needs a mask (white where the image is repainted)"
        else:
            try:
                mask = decode_image_field(data["mask"])
                mask_size = check_image(mask, png_only=True)
                if init_size and mask_size != init_size:
                    errors["mask"] = (f"mask is {mask_size[0]}x{mask_size[1]} but the image is "
                                      f"{init_size[0]}x{init_size[1]}: paint the mask on this image")
                elif _mask_empty(mask):
                    errors["mask"] = "mask is empty: paint the area to repaint in white"
            except ImageError as exc:
                errors["mask"] = str(exc)

    sizes = {}
    for key in ("width", "height"):
        default = 512
        if init_size and key not in data:  # img2img / inpaint default to the input's size
            default = init_size[0 if key == "width" else 1] // 8 * 8
        value = _number(data, key, default, MIN_SIZE, MAX_SIZE, errors)
        if key not in errors and value % 8:
            errors[key] = f"{value} is not a multiple of 8: use {value // 8 * 8} or {value // 8 * 8 + 8}"
        sizes[key] = value
    if errors:
        raise ValidationError(errors)
    return JobRequest(mode=mode, prompt=prompt, negative_prompt=negative, checkpoint=checkpoint,
                      vae=vae, loras=loras, sampler=sampler, scheduler=scheduler, steps=steps,
                      cfg=cfg, seed=seed, width=sizes["width"], height=sizes["height"],
                      batch_size=batch_size, batch_count=batch_count, denoise=denoise,
                      init_image=init, mask=mask, mask_blur=mask_blur, inpaint_area=area,
                      only_masked_padding=padding, priority=priority)


def _mask_empty(mask: bytes) -> bool:
    img = decode_png(mask, MAX_IMAGE_PIXELS)
    if not img.direct:  # interlaced, palette or packed pixels: let the WebUI judge
        return False
    step = img.channels * (2 if img.bit_depth == 16 else 1)
    # The first sample (gray / red) carries the mask; any non-black pixel counts.
    return not any(any(row[0::step]) for row in img.rows)


MODEL_EXTS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".gguf")


def list_models(store: StorageRoot, kind: str) -> list[str]:
    """Model files of a kind in the store, as the relative names a request uses."""
    folder = store.kind_dir(kind)
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.suffix.lower() in MODEL_EXTS and p.is_file())


def options(store: StorageRoot | None) -> dict[str, Any]:
    """What a form needs: modes, samplers / schedulers (ComfyUI name + A1111 label), limits
    and, with a store, the checkpoints, LoRAs and VAEs it holds; whether the built-in
    engine can run (``builtin``: available, message)."""
    data: dict[str, Any] = {
        "modes": list(MODES),
        "samplers": [{"name": k, "label": v} for k, v in samplers().items()],
        "schedulers": [{"name": k, "label": v} for k, v in schedulers().items()],
        "limits": {"size": [MIN_SIZE, MAX_SIZE], "steps": [1, MAX_STEPS], "cfg": [0, MAX_CFG],
                   "seed": [-1, MAX_SEED], "batch_size": [1, MAX_BATCH_SIZE],
                   "batch_count": [1, MAX_BATCH_COUNT], "image_pixels": MAX_IMAGE_PIXELS,
                   "image_bytes": MAX_IMAGE_BYTES},
    }
    if store is not None:
        data["models"] = {kind: list_models(store, kind) for kind in ("checkpoints", "loras", "vae")}
    from ._builtin import builtin_status  # late: only forms need it

    data["builtin"] = builtin_status()
    return data
