"""Jobs: what a user asked for (:class:`JobRequest`) and what became of it (:class:`Job`)."""

from __future__ import annotations

import concurrent.futures
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from sdpanel._configs import load_config

from ._events import JobEventLog

Mode = Literal["txt2img", "img2img", "inpaint"]
MODES: tuple[str, ...] = ("txt2img", "img2img", "inpaint")
State = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})


class JobCancelled(Exception):
    """Raised inside a backend run when the user cancelled the job."""


class BackendError(RuntimeError):
    """The WebUI failed the job (its own error message) or went away mid-job."""


@dataclass(frozen=True)
class LoRA:
    name: str
    weight: float = 1.0


@dataclass(frozen=True)
class JobRequest:
    """A validated generation request (build it with :func:`validate_request`)."""

    mode: Mode = "txt2img"
    prompt: str = ""
    negative_prompt: str = ""
    checkpoint: str = ""
    vae: str = ""
    loras: tuple[LoRA, ...] = ()
    sampler: str = "euler"
    scheduler: str = "normal"
    steps: int = 20
    cfg: float = 7.0
    seed: int = -1
    width: int = 512
    height: int = 512
    batch_size: int = 1
    batch_count: int = 1
    denoise: float = 0.75
    init_image: bytes | None = field(default=None, repr=False)
    mask: bytes | None = field(default=None, repr=False)
    mask_blur: int = 4
    inpaint_area: Literal["whole", "only_masked"] = "whole"
    only_masked_padding: int = 32
    priority: int = 0

    def public(self) -> dict[str, Any]:
        """JSON-safe parameters (images replaced by their byte counts)."""
        data = asdict(self)
        for key in ("init_image", "mask"):
            raw = getattr(self, key)
            data[key] = None if raw is None else {"bytes": len(raw)}
        data["loras"] = [{"name": lo.name, "weight": lo.weight} for lo in self.loras]
        return data


def parameters_text(req: JobRequest, seed: int) -> str:
    """The A1111 ``parameters`` text that A1111, Forge, ComfyUI loaders and civitai read."""
    prompt = req.prompt + "".join(f" <lora:{Path(lo.name).stem}:{lo.weight:g}>" for lo in req.loras)
    lines = [prompt]
    if req.negative_prompt:
        lines.append(f"Negative prompt: {req.negative_prompt}")
    names = load_config("comfyui/samplers.json")  # A1111's labels: what readers expect
    parts = [f"Steps: {req.steps}", f"Sampler: {names['samplers'].get(req.sampler, req.sampler)}",
             f"Schedule type: {names['schedulers'].get(req.scheduler, req.scheduler)}",
             f"CFG scale: {req.cfg:g}", f"Seed: {seed}", f"Size: {req.width}x{req.height}",
             f"Model: {Path(req.checkpoint).stem}"]
    if req.vae:
        parts.append(f"VAE: {Path(req.vae).name}")
    if req.mode != "txt2img":
        parts.append(f"Denoising strength: {req.denoise:g}")
    if req.mode == "inpaint":
        parts.append(f"Mask blur: {req.mask_blur}")
        if req.inpaint_area == "only_masked":
            parts.append("Inpaint area: Only masked")
    if req.batch_size > 1:
        parts.append(f"Batch size: {req.batch_size}")
    parts.append("Version: sdpanel")
    lines.append(", ".join(parts))
    return "\n".join(lines)


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


@dataclass
class JobImage:
    path: Path
    seed: int


class Job:
    """One job through its life. Mutated only on the runtime loop; read from any thread."""

    def __init__(self, request: JobRequest, seed: int, job_id: str | None = None) -> None:
        self.id = job_id or new_job_id()
        self.request = request
        self.params = request.public()  # kept after the input images are let go
        self.seed = seed
        self.state: State = "queued"
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.backend: str | None = None
        self.step = 0
        self.steps = request.steps
        self.images: list[JobImage] = []
        self.error = ""
        self.preview: bytes | None = None
        self.events = JobEventLog()
        self.future: concurrent.futures.Future[Job] = concurrent.futures.Future()
        self.cancel_requested = threading.Event()

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    def release_inputs(self) -> None:
        """Finished jobs stay listed for a while: drop their (possibly large) images."""
        self.request = replace(self.request, init_image=None, mask=None)
        self.preview = None

    def to_dict(self, image_url: str | None = None) -> dict[str, Any]:
        """JSON-safe view; ``image_url`` is a format string with ``{id}`` and ``{n}``."""
        images = []
        for n, img in enumerate(self.images):
            # A finished job outlives its files when the user cleans outputs: say so, so
            # clients show "removed" instead of requesting a 404.
            entry: dict[str, Any] = {"n": n, "seed": img.seed, "path": str(img.path),
                                     "available": img.path.is_file()}
            if image_url:
                entry["url"] = image_url.format(id=self.id, n=n)
            images.append(entry)
        return {
            "id": self.id, "state": self.state, "mode": self.request.mode,
            "priority": self.request.priority, "created": self.created, "started": self.started,
            "finished": self.finished, "backend": self.backend, "seed": self.seed,
            "progress": {"step": self.step, "steps": self.steps,
                         "fraction": (self.step / self.steps) if self.steps else 0.0},
            "images": images, "error": self.error, "params": self.params,
            "cancel_requested": self.cancel_requested.is_set(),
        }
