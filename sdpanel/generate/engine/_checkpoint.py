"""What kind of model a single-file checkpoint is, read from its safetensors header
alone (no torch, no weights read): SD 1.x, SD 1.x inpainting, SDXL, Flux, or a sentence
saying why the built-in engine cannot use it."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

MAX_HEADER = 100 * 1024**2  # safetensors caps its JSON header at 100 MB


class CheckpointError(ValueError):
    """The file is not a checkpoint the engine can load; the message is one sentence."""


def read_header(path: Path) -> dict[str, Any]:
    """The tensor table of a ``.safetensors`` file (name → dtype/shape/offsets)."""
    name = path.name
    try:
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{name} is empty or truncated (under 8 bytes): "
                                      "download it again.")
            (size,) = struct.unpack("<Q", head)
            if not 2 <= size <= MAX_HEADER:
                raise CheckpointError(f"{name} is not a safetensors file (its header length "
                                      "is impossible): download it again or pick another file.")
            raw = f.read(size)
            f.seek(0, 2)
            length = f.tell()
    except OSError as exc:
        raise CheckpointError(f"{name} cannot be read ({exc.strerror or exc}): check the "
                              "file and its permissions.") from None
    try:
        table = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{name} is corrupt (its safetensors header is not valid "
                              "JSON): download it again.") from None
    if not isinstance(table, dict):
        raise CheckpointError(f"{name} is corrupt (its safetensors header is not a table): "
                              "download it again.")
    end = max((int(v["data_offsets"][1]) for k, v in table.items()
               if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v), default=0)
    if 8 + size + end > length:
        raise CheckpointError(f"{name} is truncated ({length:,} bytes, its header needs "
                              f"{8 + size + end:,}): download it again.")
    return table


def model_family(path: Path) -> str:
    """``sd15``, ``sd15-inpaint``, ``sdxl`` or ``flux``; raises :class:`CheckpointError`."""
    if path.suffix.lower() != ".safetensors":
        raise CheckpointError(f"{path.name} is not a .safetensors file: the built-in engine "
                              "loads safetensors only (pickled .ckpt files can run code).")
    table = read_header(path)
    keys = table.keys()

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if has("model.diffusion_model.double_blocks.") or has("double_blocks."):
        return "flux"
    if has("conditioner.embedders.1.model."):
        return "sdxl"
    if has("model.diffusion_model.input_blocks.") and has("cond_stage_model.transformer."):
        shape = (table.get("model.diffusion_model.input_blocks.0.0.weight") or {}).get("shape")
        return "sd15-inpaint" if isinstance(shape, list) and len(shape) > 1 and shape[1] == 9 else "sd15"
    if has("cond_stage_model.model."):
        raise CheckpointError(f"{path.name} is an SD 2.x checkpoint, which the built-in engine "
                              "does not run: use ComfyUI or an SD 1.5 / SDXL checkpoint.")
    if has("model.diffusion_model.input_blocks."):
        raise CheckpointError(f"{path.name} has a UNet but no text encoder (a UNet-only "
                              "file): use a full checkpoint or run it in ComfyUI.")
    if has("lora_unet_") or any(".lora_" in k or "lora_down" in k for k in keys):
        raise CheckpointError(f"{path.name} is a LoRA, not a checkpoint: pick it under LoRAs.")
    raise CheckpointError(f"{path.name} is not a Stable Diffusion checkpoint the built-in "
                          "engine knows (SD 1.5, SDXL): pick another file or use ComfyUI.")
