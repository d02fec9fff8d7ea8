"""The built-in engine's torch-free parts: the header check, the memory table, the
offline layout, the sampler map, and that the kernel / CLI side never imports torch."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from sdpanel._configs import load_config
from sdpanel.generate import NoBackendError, _builtin, get_service
from sdpanel.generate.engine import CheckpointError, model_family, plan_memory
from sdpanel.generate.engine._layout import clip_vocab, layout_dir
from sdpanel.storage import StorageRoot

GIB = 1024**3


def fake_checkpoint(path: Path, tensors: dict[str, list[int]]) -> Path:
    """A safetensors file with these tensor names and shapes (zero bytes of F16)."""
    table, offset = {}, 0
    for name, shape in tensors.items():
        size = 2
        for n in shape:
            size *= n
        table[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    header = json.dumps(table).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(offset))
    return path


@pytest.mark.parametrize(("tensors", "family"), [
    ({"model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
      "cond_stage_model.transformer.text_model.final_layer_norm.weight": [768]}, "sd15"),
    ({"model.diffusion_model.input_blocks.0.0.weight": [320, 9, 3, 3],
      "cond_stage_model.transformer.text_model.final_layer_norm.weight": [768]}, "sd15-inpaint"),
    ({"model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
      "conditioner.embedders.1.model.ln_final.weight": [1280]}, "sdxl"),
    ({"model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale": [128]}, "flux"),
])
def test_model_family_from_the_header(tmp_path: Path, tensors: dict[str, list[int]], family: str) -> None:
    assert model_family(fake_checkpoint(tmp_path / "m.safetensors", tensors)) == family


@pytest.mark.parametrize(("tensors", "words"), [
    ({"model.diffusion_model.input_blocks.0.0.weight": [1],
      "cond_stage_model.model.ln_final.weight": [1]}, "SD 2.x checkpoint"),
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": [4, 4]}, "is a LoRA, not a checkpoint"),
    ({"encoder.conv_in.weight": [1]}, "not a Stable Diffusion checkpoint"),
])
def test_files_the_engine_cannot_run_get_one_sentence(tmp_path: Path, tensors: dict[str, list[int]],
                                                      words: str) -> None:
    with pytest.raises(CheckpointError) as err:
        model_family(fake_checkpoint(tmp_path / "m.safetensors", tensors))
    assert words in str(err.value) and "m.safetensors" in str(err.value)
    assert str(err.value).count(". ") == 0 and str(err.value).endswith(".")


def test_pickles_are_refused(tmp_path: Path) -> None:
    (tmp_path / "old.ckpt").write_bytes(b"PK\x03\x04")
    with pytest.raises(CheckpointError, match="loads safetensors only"):
        model_family(tmp_path / "old.ckpt")


@pytest.mark.parametrize(("family", "device", "free", "dtype", "offload"), [
    ("sd15", "cpu", None, "float32", "none"),
    ("sd15", "cuda:0", 20 * GIB, "float16", "none"),
    ("sd15", "cuda:0", 2 * GIB, "float16", "model"),
    ("sd15", "cuda:0", 1 * GIB, "float16", "sequential"),
    ("sdxl", "cuda:0", 12 * GIB, "float16", "none"),
    ("sdxl", "cuda:0", 6 * GIB, "float16", "model"),
    ("sdxl", "cuda:0", 3 * GIB, "float16", "sequential"),
    ("flux", "cuda:0", 80 * GIB, "bfloat16", "none"),
    ("sdxl", "mps", None, "float16", "none"),
])
def test_memory_plan_table(family: str, device: str, free: int | None, dtype: str, offload: str) -> None:
    plan = plan_memory(family, device, free)
    assert (plan.dtype, plan.offload) == (dtype, offload)
    assert plan.vae_tiling == (offload != "none")  # tiles whenever memory is short
    assert plan.describe().startswith(device)


def test_offline_layout_and_tokenizer_vocab(tmp_path: Path) -> None:
    vocab, merges = clip_vocab()
    assert len(vocab) == 49408 and vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert vocab["cat</w>"] == 2368 and len(merges) == 48894  # openai/CLIP's numbers
    folder = layout_dir("sdxl", tmp_path)
    index = json.loads((folder / "model_index.json").read_text())
    for name, value in index.items():
        if isinstance(value, list) and value[0] in ("diffusers", "transformers"):
            assert any((folder / name).iterdir()), name  # every component has its files here
    assert json.loads((folder / "tokenizer_2" / "tokenizer_config.json").read_text())["pad_token"] == "!"
    inpaint = layout_dir("sd15-inpaint", tmp_path)
    assert json.loads((inpaint / "unet" / "config.json").read_text())["in_channels"] == 9


def test_every_comfyui_sampler_and_scheduler_has_an_entry() -> None:
    ours = load_config("engine/samplers.json")
    comfy = load_config("comfyui/samplers.json")
    assert set(ours["samplers"]) == set(comfy["samplers"])
    assert set(ours["schedulers"]) == set(comfy["schedulers"])


def test_kernel_and_cli_side_never_import_torch() -> None:
    code = ("import sys, sdpanel.generate, sdpanel.generate.engine, sdpanel.cli; "
            "from sdpanel.generate import _builtin, _api; "
            "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_webui_and_no_engine_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_builtin, "has_engine_packages", lambda: False)
    root = StorageRoot.at(tmp_path / "store").ensure()
    (root.kind_dir("checkpoints") / "m.safetensors").write_bytes(b"x")
    with pytest.raises(NoBackendError) as err:
        get_service(root.path).submit({"prompt": "x", "checkpoint": "m.safetensors"})
    assert str(err.value).startswith("No WebUI is running and the built-in engine cannot run because "
                                     "this Python (")
    assert "launch a WebUI" in str(err.value) and "pip install 'sdpanel[engine]'" in str(err.value)


def test_worker_environment_has_no_secrets_and_is_offline(planted_tokens: dict[str, str]) -> None:
    env = _builtin.worker_env()
    assert not set(planted_tokens.values()) & set(env.values())
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
