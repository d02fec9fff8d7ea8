"""The offline component configs describe the real models: built empty (no memory, no
weights) from ``configs/engine/``, each component has the published parameter count of
SD 1.5 / SDXL 1.0, and the tokenizers encode like CLIP's. SDXL weights do not fit this
machine's tests; this is what checks its code path short of running it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("diffusers", reason="the built-in engine needs sdpanel[engine]")

import diffusers  # noqa: E402
import transformers  # noqa: E402
from accelerate import init_empty_weights  # noqa: E402

from sdpanel.generate.engine._layout import layout_dir  # noqa: E402

# Parameter counts of the published checkpoints' components.
COUNTS = {
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480,
             "text_encoder_2": 694_659_840},
}


def _empty(folder: Path, name: str) -> object:
    if name in ("unet", "vae"):
        cls = diffusers.UNet2DConditionModel if name == "unet" else diffusers.AutoencoderKL
        return cls.from_config(cls.load_config(folder / name))
    config = transformers.CLIPTextConfig.from_pretrained(folder / name)
    cls = transformers.CLIPTextModelWithProjection if name == "text_encoder_2" else transformers.CLIPTextModel
    return cls(config)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_components_have_the_published_sizes(family: str, tmp_path: Path) -> None:
    folder = layout_dir(family, tmp_path)
    with init_empty_weights():
        for name, count in COUNTS[family].items():
            model = _empty(folder, name)
            assert sum(p.numel() for p in model.parameters()) == count, name  # type: ignore[attr-defined]
    for tok in ("tokenizer", "tokenizer_2") if family == "sdxl" else ("tokenizer",):
        tokenizer = transformers.CLIPTokenizer.from_pretrained(folder / tok)
        assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
        assert tokenizer.model_max_length == 77
