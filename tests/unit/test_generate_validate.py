"""Validation of generation requests: every bad field named once, images checked for
bombs and corruption before anything is decoded in full."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import pytest

from sdpanel.generate import JobRequest, ValidationError, validate_request
from sdpanel.generate._png import encode_png, gradient_png
from sdpanel.storage import StorageRoot


@pytest.fixture
def store(tmp_path: Path) -> StorageRoot:
    root = StorageRoot.at(tmp_path / "store").ensure()
    (root.kind_dir("checkpoints") / "model.safetensors").write_bytes(b"x")
    (root.kind_dir("loras") / "style.safetensors").write_bytes(b"x")
    (root.kind_dir("vae") / "vae.safetensors").write_bytes(b"x")
    return root


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mask_png(w: int, h: int, box: tuple[int, int, int, int] | None = (8, 8, 24, 24)) -> bytes:
    rows = []
    for y in range(h):
        rows.append(bytes(255 if box and box[0] <= x < box[2] and box[1] <= y < box[3] else 0
                          for x in range(w)))
    return encode_png(w, h, rows, channels=1)


def errors_of(data: dict, store: StorageRoot | None = None) -> dict[str, str]:
    with pytest.raises(ValidationError) as err:
        validate_request(data, store)
    return err.value.errors


def test_good_txt2img_request_gets_defaults(store: StorageRoot) -> None:
    req = validate_request({"prompt": "a cat", "checkpoint": "model.safetensors",
                            "loras": [{"name": "style.safetensors", "weight": 0.6}],
                            "vae": "vae.safetensors", "sampler": "Euler a", "scheduler": "Karras"}, store)
    assert isinstance(req, JobRequest)
    assert (req.mode, req.width, req.height, req.steps, req.seed) == ("txt2img", 512, 512, 20, -1)
    assert req.sampler == "euler_ancestral" and req.scheduler == "karras"  # A1111 labels accepted
    assert req.loras[0].name == "style.safetensors" and req.loras[0].weight == 0.6


def test_every_bad_field_is_named_once(store: StorageRoot) -> None:
    errors = errors_of({"prompt": "", "checkpoint": "missing.safetensors", "steps": 0, "cfg": 99,
                        "seed": -5, "width": 500, "height": 8, "batch_size": 9, "batch_count": 0,
                        "sampler": "warp drive", "scheduler": 3, "loras": [{"name": "nope.safetensors"}],
                        "vae": "../../etc/passwd", "mode": "txt2video", "denoise": 2,
                        "inpaint_area": "most", "mask_blur": -1, "priority": "high", "colour": 1}, store)
    assert set(errors) == {"prompt", "checkpoint", "steps", "cfg", "seed", "width", "height",
                           "batch_size", "batch_count", "sampler", "scheduler", "loras", "vae",
                           "mode", "denoise", "inpaint_area", "mask_blur", "priority", "colour"}
    assert "describe the image" in errors["prompt"]
    assert "missing.safetensors" in errors["checkpoint"] and "model.safetensors" in errors["checkpoint"]
    assert "multiple of 8" in errors["width"] and "496 or 504" in errors["width"]
    assert "64" in errors["height"]
    assert "euler" in errors["sampler"]
    assert "nope.safetensors" in errors["loras"]
    assert "inside the store" in errors["vae"]
    assert "unknown field" in errors["colour"]
    assert all(msg and "\n" not in msg for msg in errors.values())


def test_empty_store_says_to_download_first(tmp_path: Path) -> None:
    root = StorageRoot.at(tmp_path / "empty").ensure()
    errors = errors_of({"prompt": "x", "checkpoint": "model.safetensors"}, root)
    assert "download one first" in errors["checkpoint"]


def test_img2img_needs_an_image_and_defaults_to_its_size(store: StorageRoot) -> None:
    assert "needs an input image" in errors_of({"mode": "img2img", "prompt": "x",
                                                "checkpoint": "model.safetensors"}, store)["init_image"]
    req = validate_request({"mode": "img2img", "prompt": "x", "checkpoint": "model.safetensors",
                            "init_image": "data:image/png;base64," + b64(gradient_png(100, 84))}, store)
    assert (req.width, req.height) == (96, 80)
    assert req.init_image is not None and req.init_image.startswith(b"\x89PNG")


def test_malformed_images_are_refused(store: StorageRoot) -> None:
    png = gradient_png(64, 64)
    base = {"mode": "img2img", "prompt": "x", "checkpoint": "model.safetensors"}
    assert "base64" in errors_of({**base, "init_image": "not base64 at all!"}, store)["init_image"]
    assert "not a PNG, JPEG or WebP" in errors_of({**base, "init_image": b64(b"GIF89a....")}, store)["init_image"]
    assert "truncated" in errors_of({**base, "init_image": b64(png[: len(png) // 2])}, store)["init_image"]
    corrupt = bytearray(png)
    corrupt[60] ^= 0xFF  # inside IDAT: the chunk checksum no longer matches
    assert "corrupt" in errors_of({**base, "init_image": b64(bytes(corrupt))}, store)["init_image"]
    jpeg_cut = b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x40\x00\x40\x03" + b"\x00" * 20
    assert "JPEG is truncated" in errors_of({**base, "init_image": b64(jpeg_cut)}, store)["init_image"]


def test_decompression_bomb_is_refused_from_its_header(store: StorageRoot) -> None:
    # A 100000x100000 PNG header with a tiny body: refused before anything is inflated.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = lambda t, b: struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))  # noqa: E731
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1_000_000)) + chunk(b"IEND", b""))
    errors = errors_of({"mode": "img2img", "prompt": "x", "checkpoint": "model.safetensors",
                        "init_image": b64(bomb)}, store)
    assert "100000x100000" in errors["init_image"] and "limit" in errors["init_image"]


def test_inpaint_mask_must_match_and_not_be_empty(store: StorageRoot) -> None:
    base = {"mode": "inpaint", "prompt": "x", "checkpoint": "model.safetensors",
            "init_image": b64(gradient_png(64, 64))}
    assert "needs a mask" in errors_of(base, store)["mask"]
    assert "is 32x32 but the image is 64x64" in errors_of({**base, "mask": b64(mask_png(32, 32))}, store)["mask"]
    assert "empty" in errors_of({**base, "mask": b64(mask_png(64, 64, None))}, store)["mask"]
    jpeg = b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x40\x00\x40\x03" + b"\x00" * 15 + b"\xff\xd9"
    assert "must be a PNG" in errors_of({**base, "mask": b64(jpeg)}, store)["mask"]
    req = validate_request({**base, "mask": b64(mask_png(64, 64)), "inpaint_area": "only_masked"}, store)
    assert req.mask is not None and req.inpaint_area == "only_masked"


def test_without_a_store_models_are_not_checked() -> None:
    req = validate_request({"prompt": "x", "checkpoint": "anything.safetensors", "seed": 42})
    assert req.checkpoint == "anything.safetensors" and req.seed == 42
