"""The loaded model and one job on it: diffusers pipelines built from a single-file
checkpoint with the offline layout, kept loaded between jobs, LoRAs and a VAE override
swapped in place. Imports torch: worker process only."""

from __future__ import annotations

import gc
import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diffusers
import torch
from PIL import Image, ImageFilter

from sdpanel._configs import load_config

from ._checkpoint import CheckpointError, model_family, read_header
from ._layout import FAMILIES, layout_dir
from ._memory import MemoryPlan, plan_memory
from ._samplers import make_scheduler

log = logging.getLogger("sdpanel.engine")

PIPELINES = {  # family → (txt2img, img2img, inpaint) class names
    "sd15": ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"),
    "sd15-inpaint": ("StableDiffusionInpaintPipeline", "StableDiffusionInpaintPipeline",
                     "StableDiffusionInpaintPipeline"),
    "sdxl": ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline",
             "StableDiffusionXLInpaintPipeline"),
}
MODE_INDEX = {"txt2img": 0, "img2img": 1, "inpaint": 2}


class Cancelled(Exception):
    """Raised from the step callback when the job was cancelled."""


class JobFailed(Exception):
    """A job cannot run; the message is one sentence for the user."""


@dataclass
class Loaded:
    checkpoint: Path
    family: str
    plan: MemoryPlan
    base: Any  # the txt2img pipeline that owns the components
    original_vae: Any
    pipes: dict[str, Any] = field(default_factory=dict)
    vae: str = ""
    loras: tuple[str, ...] = ()


def pick_device() -> tuple[str, int | None]:
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        free, _ = torch.cuda.mem_get_info(index)
        return f"cuda:{index}", int(free)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps", None
    return "cpu", None


def _apply_plan(pipe: Any, plan: MemoryPlan) -> None:
    if plan.offload == "model":
        pipe.enable_model_cpu_offload(device=plan.device)
    elif plan.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=plan.device)
    else:
        pipe.to(plan.device)
    if plan.vae_tiling:
        pipe.vae.enable_tiling()
    if plan.vae_slicing:
        pipe.vae.enable_slicing()
    if plan.attention_slicing:
        pipe.enable_attention_slicing()


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


class Engine:
    def __init__(self, cache_root: Path) -> None:
        self.cache_root = cache_root
        self.loaded: Loaded | None = None

    # ---- model ---------------------------------------------------------------------
    def unload(self) -> bool:
        had = self.loaded is not None
        self.loaded = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return had

    def load(self, checkpoint: Path) -> Loaded:
        if self.loaded is not None and self.loaded.checkpoint == checkpoint:
            return self.loaded
        family = model_family(checkpoint)
        if family not in FAMILIES:
            raise CheckpointError(f"{checkpoint.name} is a {family.title()} checkpoint, which the "
                                  "built-in engine cannot load offline yet: run it in ComfyUI.")
        self.unload()  # free the old model before reading the new one
        device, free = pick_device()
        plan = plan_memory(family, device, free)
        dtype = getattr(torch, plan.dtype)
        cls = getattr(diffusers, PIPELINES[family][0])
        kwargs: dict[str, Any] = {"safety_checker": None, "requires_safety_checker": False} \
            if family.startswith("sd15") else {}
        try:
            pipe = cls.from_single_file(str(checkpoint), config=str(layout_dir(family, self.cache_root)),
                                        local_files_only=True, torch_dtype=dtype, **kwargs)
        except Exception as exc:  # any library error while reading it means a bad file here
            detail = _first_sentence(exc)
            raise CheckpointError(f"{checkpoint.name} could not be loaded as an {family} checkpoint "
                                  f"({detail}): download it again or pick another file.") from None
        pipe.set_progress_bar_config(disable=True)
        _apply_plan(pipe, plan)
        self.loaded = Loaded(checkpoint, family, plan, pipe, pipe.vae)
        log.info("loaded %s (%s): %s", checkpoint.name, family, plan.describe())
        return self.loaded

    def _set_vae(self, m: Loaded, vae: str) -> None:
        if vae == m.vae:
            return
        if not vae:
            new = m.original_vae
        else:
            path = Path(vae)
            keys = read_header(path).keys()
            if not any(k.startswith(("encoder.", "decoder.", "first_stage_model.")) for k in keys):
                raise JobFailed(f"{path.name} is not a VAE (no encoder / decoder weights): pick a "
                                "VAE file or leave the VAE empty.")
            try:
                new = diffusers.AutoencoderKL.from_single_file(
                    str(path), config=str(layout_dir(m.family, self.cache_root)), subfolder="vae",
                    local_files_only=True, torch_dtype=m.base.vae.dtype)
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                raise JobFailed(f"VAE {path.name} could not be loaded ({_first_sentence(exc)}): pick "
                                "another VAE or leave it empty.") from None
            new.to(m.base.vae.device)
            if m.plan.vae_slicing:
                new.enable_slicing()
            if m.plan.vae_tiling:
                new.enable_tiling()
        m.base.register_modules(vae=new)
        m.pipes.clear()  # derived pipelines hold the old VAE
        m.vae = vae

    def _set_loras(self, m: Loaded, loras: list[dict[str, Any]]) -> None:
        paths = tuple(str(lo["path"]) for lo in loras)
        if paths != m.loras:
            if m.loras:
                m.base.unload_lora_weights()
            m.loras = ()
            for i, path in enumerate(paths):
                try:
                    m.base.load_lora_weights(lora_state_dict(Path(path), m.family), adapter_name=f"lora{i}")
                except (OSError, ValueError, RuntimeError, KeyError) as exc:
                    m.base.unload_lora_weights()
                    raise JobFailed(f"LoRA {Path(path).name} does not fit this checkpoint "
                                    f"({_first_sentence(exc)}): pick a LoRA made for "
                                    f"{m.family.upper()} models.") from None
            m.loras = paths
        if paths:
            m.base.set_adapters([f"lora{i}" for i in range(len(paths))],
                                [float(lo["weight"]) for lo in loras])

    def _pipe(self, m: Loaded, mode: str) -> Any:
        name = PIPELINES[m.family][MODE_INDEX[mode]]
        if name == type(m.base).__name__:
            return m.base
        if name not in m.pipes:
            m.pipes[name] = getattr(diffusers, name).from_pipe(m.base)
            m.pipes[name].set_progress_bar_config(disable=True)
        return m.pipes[name]

    # ---- a job ---------------------------------------------------------------------
    def run(self, req: dict[str, Any], init: bytes | None, mask: bytes | None,
            on_step: Callable[[int, int, Image.Image | None], None],
            cancelled: Callable[[], bool]) -> list[bytes]:
        m = self.load(Path(req["checkpoint"]))
        self._set_vae(m, req.get("vae") or "")
        self._set_loras(m, req.get("loras") or [])
        mode = req["mode"]
        if mode == "inpaint" and req.get("inpaint_area") == "only_masked":
            raise JobFailed("inpaint area 'only masked' is not available in the built-in engine "
                            "yet: use 'whole' or run the job in ComfyUI / Forge.")
        pipe = self._pipe(m, mode)
        pipe.scheduler = make_scheduler(m.base.scheduler, req["sampler"], req["scheduler"])
        width, height = int(req["width"]), int(req["height"])
        if width % 8 or height % 8:
            raise JobFailed(f"{width}x{height} is not a multiple of 8: the built-in engine needs "
                            "width and height divisible by 8.")
        rgb = load_config("engine/" + FAMILIES[m.family])["preview_rgb"]
        steps, batch_size, batch_count = int(req["steps"]), int(req["batch_size"]), int(req["batch_count"])
        done = [0]
        kwargs: dict[str, Any] = {"prompt": req["prompt"], "negative_prompt": req.get("negative_prompt") or None,
                                  "num_inference_steps": steps, "guidance_scale": float(req["cfg"]),
                                  "num_images_per_prompt": batch_size, "width": width, "height": height}
        source = mask_image = None
        if mode != "txt2img" or m.family == "sd15-inpaint":
            source = (Image.open(io.BytesIO(init)).convert("RGB") if init
                      else Image.new("RGB", (width, height), (127, 127, 127))).resize((width, height))
            kwargs["image"] = source
            kwargs["strength"] = float(req["denoise"]) if mode != "txt2img" else 1.0
        if mode == "inpaint" or m.family == "sd15-inpaint":
            mask_image = (Image.open(io.BytesIO(mask)).convert("L").resize((width, height)) if mask
                          else Image.new("L", (width, height), 255))
            blur = int(req.get("mask_blur") or 0)
            if blur:
                mask_image = mask_image.filter(ImageFilter.GaussianBlur(blur))
            kwargs["mask_image"] = mask_image
        if mode == "img2img" and m.family != "sd15-inpaint":
            kwargs.pop("width"), kwargs.pop("height")  # img2img takes the size of the image

        def step_end(p: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            total = max(1, int(getattr(p, "num_timesteps", 0) or steps)) * batch_count
            done[0] += 1
            on_step(done[0], total, _preview(tensors.get("latents"), rgb))
            if cancelled():
                raise Cancelled()
            return tensors

        images: list[bytes] = []
        for n in range(batch_count):
            if cancelled():
                raise Cancelled()
            generator = torch.Generator("cpu").manual_seed(int(req["seed"]) + n)
            try:
                out = pipe(**kwargs, generator=generator, callback_on_step_end=step_end,
                           callback_on_step_end_tensor_inputs=["latents"])
            except torch.cuda.OutOfMemoryError:
                self.unload()
                raise JobFailed(f"out of GPU memory at {width}x{height}, batch {batch_size}: lower the "
                                "size or batch, or stop other programs on the GPU.") from None
            for image in out.images:
                if mask_image is not None and source is not None and mode == "inpaint":
                    # Outside the (blurred) mask the user's pixels stay exactly as they were:
                    # the VAE round trip would otherwise shift them all slightly.
                    image = Image.composite(image.convert("RGB"), source, mask_image)
                images.append(png(image))
        return images


_LDM_BLOCK = re.compile(r"^lora_unet_(input_blocks|output_blocks)_(\d+)_(\d+)_(.+)$")
_LDM_MIDDLE = re.compile(r"^lora_unet_middle_block_(\d+)_(.+)$")
_RESNET = {"in_layers_2": "conv1", "out_layers_3": "conv2", "emb_layers_1": "time_emb_proj",
           "skip_connection": "conv_shortcut"}


def lora_state_dict(path: Path, family: str) -> dict[str, Any]:
    """A LoRA's tensors, with kohya names in the original (LDM) UNet layout —
    ``lora_unet_input_blocks_4_1_...``, which ComfyUI and A1111 read — renamed to the
    diffusers layout kohya also uses (``lora_unet_down_blocks_1_attentions_0_...``), the
    one diffusers' converter understands."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    if not family.startswith("sd15"):
        return tensors
    out: dict[str, Any] = {}
    for key, value in tensors.items():
        middle = _LDM_MIDDLE.match(key)
        if middle is not None:  # middle_block_0 / _2 are resnets, _1 the attention
            i, rest = int(middle.group(1)), middle.group(2)
            if i != 1:
                for old, new in _RESNET.items():
                    rest = rest.replace(old, new)
            name = "mid_block_attentions_0" if i == 1 else f"mid_block_resnets_{i // 2}"
            out[f"lora_unet_{name}_{rest}"] = value
            continue
        match = _LDM_BLOCK.match(key)
        if match is None:
            out[key] = value
            continue
        where, i, j, rest = match.group(1), int(match.group(2)), int(match.group(3)), match.group(4)
        kind = "attentions" if j == 1 else "resnets"
        if kind == "resnets":
            for old, new in _RESNET.items():
                rest = rest.replace(old, new)
        if where == "input_blocks" and i > 0:
            name = f"down_blocks_{(i - 1) // 3}_{kind}_{(i - 1) % 3}"
        elif where == "output_blocks":
            name = f"up_blocks_{i // 3}_{kind}_{i % 3}"
        else:
            out[key] = value
            continue
        out[f"lora_unet_{name}_{rest}"] = value
    return out


def _first_sentence(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split(". ")[0].rstrip(".")[:200]


def _preview(latents: Any, rgb: list[list[float]]) -> Image.Image | None:
    """A latent-size RGB image from the latents by a linear map (no VAE decode)."""
    if latents is None or latents.ndim != 4 or latents.shape[1] != len(rgb):
        return None
    factors = torch.tensor(rgb, dtype=torch.float32)
    pixels = torch.einsum("chw,cr->hwr", latents[0].detach().float().cpu(), factors)
    pixels = ((pixels + 1) / 2).clamp(0, 1).mul(255).byte().numpy()
    return Image.fromarray(pixels, "RGB")
