"""Link parsing and kind mapping that need no server: malformed input fails before any
request (the context points at a closed port, so a request would surface as another error)."""

from __future__ import annotations

import pytest

from sdpanel.sources import (
    LinkError,
    ResolveContext,
    guess_kind,
    kind_for_civitai_type,
    resolve_link,
)
from sdpanel.sources._links import _pick_file


@pytest.fixture
def offline() -> ResolveContext:
    return ResolveContext(civitai_base_url="http://127.0.0.1:9", hf_endpoint="http://127.0.0.1:9",
                          civitai_token="tok-unit-0123456789", probe_links=False)


@pytest.mark.parametrize(("civitai_type", "kind"), [
    ("Checkpoint", "checkpoints"), ("LORA", "loras"), ("LoCon", "loras"), ("DoRA", "loras"),
    ("TextualInversion", "embeddings"), ("VAE", "vae"), ("Controlnet", "controlnet"),
    ("Upscaler", "upscalers"), ("Detection", "adetailer"), ("UNet", "diffusion_models"),
    ("Workflows", "other"), ("SomethingNew", "other"),
])
def test_civitai_type_to_kind(civitai_type: str, kind: str) -> None:
    assert kind_for_civitai_type(civitai_type) == kind


@pytest.mark.parametrize(("name", "kind"), [
    ("face_yolov8n.pt", "adetailer"), ("sam_vit_b_01ec64.pth", "sam"), ("4x-UltraSharp.pth", "upscalers"),
    ("RealESRGAN_x4plus.pth", "upscalers"), ("control_v11p_sd15_canny_fp16.safetensors", "controlnet"),
    ("sdxl_vae.safetensors", "vae"), ("my_lora_v2.safetensors", "loras"), ("t5xxl_fp8.safetensors", "text_encoders"),
    ("model.safetensors", "other"),
])
def test_guess_kind_from_file_name(name: str, kind: str) -> None:
    assert guess_kind(name) == kind


def test_pick_file_prefers_file_id_then_filters_then_primary() -> None:
    files = [{"id": 1, "type": "Model", "metadata": {"fp": "fp32", "format": "SafeTensor"}},
             {"id": 2, "type": "Model", "primary": True, "metadata": {"fp": "fp16", "format": "SafeTensor"}},
             {"id": 3, "type": "VAE", "metadata": {"fp": "fp16", "format": "PickleTensor"}}]
    assert _pick_file(files, {"fileId": ["3"]})["id"] == 3
    assert _pick_file(files, {"fp": ["fp32"]})["id"] == 1
    assert _pick_file(files, {"type": ["VAE"]})["id"] == 3
    assert _pick_file(files, {})["id"] == 2
    assert _pick_file(files, {"format": ["GGUF"]}) is None
    assert _pick_file(files, {"fileId": ["9"]}) is None


@pytest.mark.parametrize("text", [
    "", "not a link", "mailto:someone@example.com", "urn:air:sdxl:lora:civitai:1@v2",
    "urn:air:sdxl:lora:tensorart:1@2", "https://civitai.com/images/123", "http:///nohost",
    "https://huggingface.co/owner/repo", "https://github.com/o/r/blob/main/x.pt", "hf://owner/repo",
    "owner/repo",
])
async def test_malformed_input_fails_before_any_request(text: str, offline: ResolveContext) -> None:
    with pytest.raises(LinkError) as err:
        await resolve_link(text, offline)
    msg = str(err.value)
    assert msg and "\n" not in msg and "tok-unit" not in msg


async def test_plain_link_without_probe_keeps_url_and_name(offline: ResolveContext) -> None:
    spec = await resolve_link("https://example.com/files/My%20Model.safetensors?x=1", offline, kind="loras")
    assert (spec.url, spec.filename, spec.kind, spec.source) == (
        "https://example.com/files/My%20Model.safetensors?x=1", "My Model.safetensors", "loras", "url")
    assert spec.headers == {}, "tokens go only to their own API host"


@pytest.mark.parametrize(("text", "scheme"), [("civitai.com/models/123", "https"), ("huggingface.co/a/b", "https"),
                                              ("127.0.0.1:9/models/1", "http"), ("example.com/x.bin", None),
                                              ("civitai.com", None)])
def test_a_known_host_without_scheme_gets_one(text: str, scheme: str | None, offline: ResolveContext) -> None:
    from sdpanel.sources._links import _bare_host_scheme

    assert _bare_host_scheme(text, offline) == scheme
