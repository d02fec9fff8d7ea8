"""Diffusers' folder layout (``model_index.json``, one ``config.json`` per component, the
CLIP tokenizer files) written from ``configs/engine/`` into a cache folder, so that
``from_single_file(..., config=folder)`` finds everything locally and never asks a hub."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from sdpanel._configs import config_dir, load_config

VOCAB_FILE = "engine/clip_bpe_simple_vocab_16e6.txt.gz"
FAMILIES = {"sd15": "sd15.json", "sd15-inpaint": "sd15.json", "sdxl": "sdxl.json"}
SPECIAL = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte → printable character map (from openai/CLIP's tokenizer)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


@cache
def clip_vocab() -> tuple[dict[str, int], list[str]]:
    """(vocab, merges) exactly as openai/CLIP builds them from its BPE file: 49408 tokens."""
    lines = gzip.decompress((config_dir() / VOCAB_FILE).read_bytes()).decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _tokenizer(folder: Path, settings: dict[str, Any]) -> None:
    vocab, merges = clip_vocab()
    _write(folder / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    _write(folder / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
    _write(folder / "special_tokens_map.json", json.dumps(
        {**SPECIAL, "pad_token": settings["pad_token"]}))
    _write(folder / "tokenizer_config.json", json.dumps(settings))


def layout_dir(family: str, cache_root: Path) -> Path:
    """The folder for ``family`` under ``cache_root``, written once per config version."""
    if family not in FAMILIES:
        raise ValueError(f"no offline configs for model family {family!r}")
    spec = load_config("engine/" + FAMILIES[family])
    components = json.loads(json.dumps(spec["components"]))
    if family == "sd15-inpaint":  # the inpainting UNet also takes the mask and masked image
        components["unet"]["in_channels"] = 9
    digest = hashlib.sha256(json.dumps([family, components, spec["tokenizers"]],
                                       sort_keys=True).encode()).hexdigest()[:12]
    folder = cache_root / f"{family}-{digest}"
    if (folder / "model_index.json").is_file():
        return folder
    for name, config in components.items():
        filename = "scheduler_config.json" if name == "scheduler" else "config.json"
        _write(folder / name / filename, json.dumps(config, indent=1))
    for name, settings in spec["tokenizers"].items():
        _tokenizer(folder / name, settings)
    _write(folder / "model_index.json", json.dumps(spec["model_index"], indent=1))  # last: the marker
    return folder
