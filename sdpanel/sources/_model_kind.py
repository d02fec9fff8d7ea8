"""A model's kind from its safetensors header (tensor names and shapes), not its file name.

A Hugging Face ``model.safetensors`` or ``diffusion_pytorch_model.safetensors`` says
nothing by its name; its header does: an SDXL checkpoint has ``conditioner.embedders.1``,
a LoRA ``lora_up``/``lora_A`` pairs, a VAE ``encoder.conv_in`` without a UNet, and so on.
Only the header is read (8 bytes of length + JSON), locally or with two small ranged
requests, so classifying a 20 GB file costs a few hundred KB. The result is a kind id
from ``configs/kinds.json`` (the store folder every WebUI is linked to) plus the base model
when the shapes tell it. A kind the user picked always wins (callers apply it after).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ModelKind", "header_from_bytes", "kind_from_header", "read_local_header"]

MAX_HEADER = 100 * 1024 * 1024  # the safetensors reference limit


@dataclass(frozen=True)
class ModelKind:
    kind: str
    """A kinds.json id: checkpoints, diffusion_models, loras, vae, text_encoders, ..."""
    base_model: str | None
    """"SD 1.5", "SD 2", "SDXL 1.0", "SD 3", "Flux.1" when the shapes tell; else None."""
    reason: str
    """Which tensors decided it (shown in the CLI and the sidecar)."""


def header_from_bytes(head: bytes) -> dict[str, Any] | None:
    """The header JSON from a file's first bytes; None when they are not a (complete)
    safetensors header. Tensor offsets are not checked: header-only reads are the point."""
    if len(head) < 10:
        return None
    (n,) = struct.unpack("<Q", head[:8])
    if n < 2 or n > MAX_HEADER or len(head) < 8 + n:
        return None
    try:
        header = json.loads(head[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return header if isinstance(header, dict) else None


def header_length(first8: bytes) -> int | None:
    if len(first8) < 8:
        return None
    (n,) = struct.unpack("<Q", first8[:8])
    return n if 2 <= n <= MAX_HEADER else None


def read_local_header(path: str | Path) -> dict[str, Any] | None:
    with open(path, "rb") as f:
        n = header_length(f.read(8))
        if n is None:
            return None
        return header_from_bytes(struct.pack("<Q", n) + f.read(n))


# -- the rules -------------------------------------------------------------------------

_LORA = re.compile(r"(lora_(up|down|a|b)\b|\.lora_(up|down|a|b)\.|lora_[ab]\.weight|\.hada_w[12]_|"
                   r"\.lokr_w[12]|^lora_(unet|te\d?)_|^lycoris_)", re.I)
_OLD_ESRGAN = re.compile(r"^model\.\d+\.sub\.\d+\.RDB\d\.")


def _shape(header: Mapping[str, Any], key: str) -> list[int]:
    info = header.get(key)
    shape = info.get("shape") if isinstance(info, dict) else None
    return [int(x) for x in shape] if isinstance(shape, list) else []


def _context_dim(header: Mapping[str, Any], keys: list[str]) -> int | None:
    """The UNet's cross-attention width (768 SD1.x, 1024 SD2.x, 2048 SDXL)."""
    for k in keys:
        if k.endswith("attn2.to_k.weight"):
            shape = _shape(header, k)
            if len(shape) == 2:
                return shape[1]
    return None


def _unet_base(header: Mapping[str, Any], keys: list[str], prefix: str) -> str | None:
    if any(k.startswith(prefix + "double_blocks.") for k in keys):
        return "Flux.1"
    if any(k.startswith(prefix + "joint_blocks.") for k in keys):
        return "SD 3"
    if f"{prefix}label_emb.0.0.weight" in header:
        return "SDXL 1.0"
    return {768: "SD 1.5", 1024: "SD 2", 2048: "SDXL 1.0"}.get(_context_dim(header, keys) or 0)


def _lora_base(keys: list[str]) -> str | None:
    joined = "\n".join(keys)
    if any(t in joined for t in ("double_blocks", "single_blocks", "single_transformer_blocks")):
        return "Flux.1"
    if "lora_te2_" in joined or "lora_te1_" in joined or "input_blocks_4_1_transformer_blocks_1" in joined:
        return "SDXL 1.0"
    if "lora_te_" in joined or "lora_unet_" in joined:
        return "SD 1.5"
    return None


def _text_encoder(header: Mapping[str, Any], keys: list[str]) -> ModelKind | None:
    if any(k.startswith(("encoder.block.0.layer.0.SelfAttention", "shared.weight")) for k in keys):
        width = _shape(header, "shared.weight")[1:2] or [0]
        return ModelKind("text_encoders", None, f"T5 encoder (d_model {width[0] or '?'})")
    for pre in ("text_model.", "transformer.text_model.", ""):
        emb = _shape(header, f"{pre}embeddings.token_embedding.weight")
        if emb and any(k.startswith(f"{pre}encoder.layers.") for k in keys):
            width = emb[-1] if len(emb) == 2 else 0
            name = {768: "CLIP-L", 1024: "CLIP-H", 1280: "CLIP-G"}.get(width, "CLIP")
            return ModelKind("text_encoders", None, f"{name} text encoder")
    return None


def kind_from_header(header: Mapping[str, Any]) -> ModelKind | None:
    """Classify by tensor names and shapes; None when no rule matches (keep the guess)."""
    keys = [k for k in header if k != "__metadata__"]
    if not keys:
        return None
    key_set = set(keys)
    lora = sum(1 for k in keys if _LORA.search(k))
    if lora and lora * 3 >= len(keys):  # LoRA files are (almost) all lora tensors
        return ModelKind("loras", _lora_base(keys), f"{lora} LoRA tensors")
    if any(k.startswith(("control_model.", "controlnet_cond_embedding.")) or "input_hint_block" in k
           or k.startswith("controlnet_") for k in keys):
        prefix = "control_model." if any(k.startswith("control_model.") for k in keys) else ""
        return ModelKind("controlnet", _unet_base(header, keys, prefix) or _unet_base(header, keys, ""),
                         "ControlNet hint block")
    if any(k.startswith(("image_proj.", "ip_adapter.")) for k in keys):
        return ModelKind("ipadapter", None, "IP-Adapter image projection")
    if any(k.startswith("model.diffusion_model.") for k in keys):
        base = _unet_base(header, keys, "model.diffusion_model.")
        if any(k.startswith("conditioner.embedders.1.") for k in keys):
            base = "SDXL 1.0"
        elif base is None and any(k.startswith("cond_stage_model.transformer.") for k in keys):
            base = "SD 1.5"
        elif base is None and any(k.startswith("cond_stage_model.model.") for k in keys):
            base = "SD 2"
        return ModelKind("checkpoints", base, "UNet under model.diffusion_model")
    if any(k.startswith(("double_blocks.", "joint_blocks.", "input_blocks.")) for k in keys) \
            or {"single_transformer_blocks.0.attn.to_q.weight", "transformer_blocks.0.attn.to_q.weight"} & key_set:
        base = _unet_base(header, keys, "")
        if base is None and any(k.startswith("single_transformer_blocks.") for k in keys):
            base = "Flux.1"
        return ModelKind("diffusion_models", base, "diffusion model without text encoder or VAE")
    vae_pre = next((p for p in ("first_stage_model.", "vae.", "") if f"{p}encoder.conv_in.weight" in key_set
                    and f"{p}decoder.conv_out.weight" in key_set), None)
    if vae_pre is not None:
        latent = (_shape(header, f"{vae_pre}decoder.conv_in.weight")[1:2] or [0])[0]
        base = {4: "SD 1.5 / SDXL", 16: "Flux.1 / SD 3"}.get(latent)
        return ModelKind("vae", base, f"VAE ({latent or '?'} latent channels)")
    if "vision_model.embeddings.patch_embedding.weight" in key_set \
            or any(k.startswith("vision_model.encoder.layers.") for k in keys):
        return ModelKind("clip_vision", None, "CLIP vision encoder")
    text = _text_encoder(header, keys)
    if text is not None:
        return text
    if ("conv_first.weight" in key_set and ({"conv_last.weight", "conv_up1.weight"} & key_set)) \
            or any(_OLD_ESRGAN.match(k) for k in keys) or "RRDB_trunk.0.RDB1.conv1.weight" in key_set:
        return ModelKind("upscalers", None, "super-resolution network (ESRGAN/SwinIR-style)")
    if key_set <= {"emb_params", "clip_l", "clip_g"} and \
            all(len(_shape(header, k)) == 2 for k in keys):
        return ModelKind("embeddings", None, "textual inversion vectors")
    return None
