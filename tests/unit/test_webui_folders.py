"""The per-WebUI folder tables match shared/reference/webuis.md row by row."""

from __future__ import annotations

import pytest

from sdpanel.storage import kind_ids, normalize_webui, webui_folders, webui_ids, webui_link_method
from sdpanel.storage._comfy_yaml import render_block, strip_block, yaml_key
from sdpanel.storage._fsops import unique_name

A1111_LIKE = {
    "checkpoints": ["models/Stable-diffusion"],
    "diffusion_models": ["models/Stable-diffusion/unet"],
    "loras": ["models/Lora", "models/LyCORIS"],
    "embeddings": ["embeddings"],
    "vae": ["models/VAE"],
    "text_encoders": ["models/text_encoder"],
    "controlnet": ["models/ControlNet", "models/controlnet"],
    "upscalers": ["models/ESRGAN"],
    "adetailer": ["models/adetailer"],
    "hypernetworks": ["models/hypernetworks"],
    "ipadapter": ["models/ControlNet"],
    "sam": ["models/sam"],
}
EXPECTED = {
    "comfyui": {
        "checkpoints": ["models/checkpoints"],
        "diffusion_models": ["models/diffusion_models"],
        "loras": ["models/loras"],
        "embeddings": ["models/embeddings"],
        "vae": ["models/vae"],
        "text_encoders": ["models/text_encoders", "models/clip"],
        "clip_vision": ["models/clip_vision"],
        "controlnet": ["models/controlnet"],
        "upscalers": ["models/upscale_models"],
        "adetailer": ["models/ultralytics/bbox", "models/ultralytics/segm"],
        "hypernetworks": ["models/hypernetworks"],
        "ipadapter": ["models/ipadapter"],
        "sam": ["models/sams"],
    },
    "forge": A1111_LIKE,
    "a1111": A1111_LIKE,
    "reforge": A1111_LIKE,
    "forge-classic": {**A1111_LIKE, "embeddings": ["models/embeddings"]},
    "forge-neo": {**A1111_LIKE, "embeddings": ["models/embeddings"]},
    "sd-ux": A1111_LIKE,
    "sdnext": {
        "checkpoints": ["models/Stable-diffusion"],
        "diffusion_models": ["models/UNET"],
        "loras": ["models/Lora"],
        "embeddings": ["models/embeddings"],
        "vae": ["models/VAE"],
        "text_encoders": ["models/CLIP"],
        "controlnet": ["models/ControlNet"],
        "upscalers": ["models/ESRGAN"],
        "hypernetworks": ["models/hypernetworks"],
    },
}


def test_every_reference_webui_is_in_the_table() -> None:
    assert set(webui_ids()) == set(EXPECTED)


@pytest.mark.parametrize("webui", sorted(EXPECTED))
def test_folders_match_the_reference(webui: str) -> None:
    assert webui_folders(webui) == EXPECTED[webui]
    assert set(webui_folders(webui)) <= set(kind_ids())


def test_dashes_in_the_reference_are_absent() -> None:
    for webui in ("forge", "a1111", "reforge", "forge-classic", "forge-neo", "sd-ux", "sdnext"):
        assert "clip_vision" not in webui_folders(webui)
    for kind in ("adetailer", "ipadapter", "sam"):
        assert kind not in webui_folders("sdnext")


def test_link_methods_and_aliases() -> None:
    assert webui_link_method("comfyui") == "extra_model_paths"
    assert {webui_link_method(w) for w in webui_ids() if w != "comfyui"} == {"symlink"}
    assert normalize_webui("Forge_Neo") == "forge-neo"
    assert normalize_webui("classic") == "forge-classic"
    assert normalize_webui("SD_UX") == "sd-ux"
    assert normalize_webui("AUTOMATIC1111") == "a1111"
    with pytest.raises(ValueError, match="known: comfyui"):
        normalize_webui("invokeai")


def test_comfy_yaml_keys() -> None:
    assert yaml_key("models/ultralytics/bbox") == "ultralytics_bbox"
    assert yaml_key("models/upscale_models") == "upscale_models"
    assert yaml_key("models/clip") == "clip"


def test_yaml_block_round_trip_keeps_user_text() -> None:
    yaml = pytest.importorskip("yaml")
    user = "# my paths\na111:\n    base_path: /sd\n\n    checkpoints: models/Stable-diffusion\n"
    block = render_block(__import__("pathlib").Path('/st "quoted"'), {"checkpoints": "checkpoints"})
    merged = user + "\n" + block
    data = yaml.safe_load(merged)
    assert data["sdpanel"] == {"base_path": '/st "quoted"', "checkpoints": "checkpoints"}
    assert data["a111"]["base_path"] == "/sd"
    assert strip_block(merged) == user
    # A user who deleted our marker comments still gets our key removed, theirs kept.
    no_markers = "\n".join(ln for ln in merged.splitlines() if not ln.startswith("# >>>")
                           and not ln.startswith("# <<<")) + "\nlater:\n    x: y\n"
    assert yaml.safe_load(strip_block(no_markers)) == {"a111": data["a111"], "later": {"x": "y"}}


def test_unique_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "m.safetensors").write_bytes(b"1")
    (tmp_path / "m-2.safetensors").write_bytes(b"2")
    assert unique_name(tmp_path / "m.safetensors").name == "m-3.safetensors"
    assert unique_name(tmp_path / "n.ckpt").name == "n.ckpt"
    (tmp_path / "m.civitai.json").write_text("{}")
    (tmp_path / "m.preview.png").write_bytes(b"")
    assert unique_name(tmp_path / "m.civitai.json").name == "m-2.civitai.json"
    assert unique_name(tmp_path / "m.preview.png").name == "m-2.preview.png"
