"""A1111 / Forge / ReForge backend (``--api``): one blocking ``/sdapi/v1/txt2img`` or
``img2img`` call, with ``/sdapi/v1/progress`` polled beside it for steps and previews."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from pathlib import Path
from typing import Any

import aiohttp

from sdpanel.settings import redact

from ._backend import HTTPBackend, Reporter
from ._jobs import BackendError, Job, JobCancelled, JobRequest
from ._validate import samplers, schedulers


class A1111Backend(HTTPBackend):
    flavour = "a1111"
    ping_path = "/internal/ping"

    def __init__(self, url: str, name: str | None = None, poll_interval: float = 0.5,
                 timeout: float = 30.0) -> None:
        super().__init__(url, name, timeout)
        self.poll_interval = poll_interval

    async def interrupt(self) -> None:
        s = await self.session()
        async with s.post(f"{self.url}/sdapi/v1/interrupt") as r:
            r.raise_for_status()

    async def _run(self, job: Job, report: Reporter) -> list[bytes]:
        req = job.request
        s = await self.session()
        endpoint = "txt2img" if req.mode == "txt2img" else "img2img"
        if req.checkpoint:
            await self._ensure_checkpoint(s, req.checkpoint)
        forge = bool(req.vae) and await self._forge_vae(s, req.vae)
        call = asyncio.ensure_future(self._post(s, endpoint, payload(req, job.seed, forge_modules=forge)))
        try:
            while True:
                done, _ = await asyncio.wait({call}, timeout=self.poll_interval)
                if done:
                    break
                await self._poll(s, report)
        finally:
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await call
        body = call.result()
        if job.cancel_requested.is_set():
            raise JobCancelled()  # an interrupted A1111 still answers with what it had
        want = req.batch_size * req.batch_count
        try:
            # Extra images (masks, ControlNet maps) come after the generated ones.
            return [base64.b64decode(b64.split(",", 1)[-1]) for b64 in body.get("images", [])[:want]]
        except (binascii.Error, ValueError, AttributeError):
            raise BackendError("A1111 answered with images that are not base64") from None

    async def _listed(self, s: aiohttp.ClientSession) -> set[str] | None:
        """Every name ``sd_model_checkpoint`` takes for the checkpoints the WebUI lists:
        the relative file name (the title without its `` [hash]``), the model name and the
        file's own name. None when it does not answer the list (the job's own call says why)."""
        async with s.get(f"{self.url}/sdapi/v1/sd-models") as r:
            if r.status != 200:
                return None
            models = await r.json(content_type=None)
        names: set[str] = set()
        for m in models if isinstance(models, list) else []:
            title = str(m.get("title") or "")
            names |= {title, title.rsplit(" [", 1)[0], str(m.get("model_name") or ""),
                      Path(str(m.get("filename") or "")).name}
        return names - {""}

    async def _ensure_checkpoint(self, s: aiohttp.ClientSession, checkpoint: str) -> None:
        """A1111 / Forge drop an ``sd_model_checkpoint`` override naming a checkpoint they do
        not list and generate with the loaded one, saying nothing; they list only what was
        there at launch (or at the last refresh). So: refresh once when the checkpoint is
        not listed (a file added to the store since), then refuse with the cause."""
        listed = await self._listed(s)
        if listed is None or checkpoint in listed:
            return
        async with s.post(f"{self.url}/sdapi/v1/refresh-checkpoints") as r:
            await r.read()
        listed = await self._listed(s)
        if listed is not None and checkpoint not in listed:
            raise BackendError(
                f"{self.name} does not list the checkpoint {checkpoint!r}, even after refreshing "
                "its list (it would generate with another model): put the file in the store's "
                "checkpoints folder and relaunch the WebUI linked to the store, or pick one it lists")

    async def _forge_vae(self, s: aiohttp.ClientSession, vae: str) -> bool:
        """True on Forge (it answers ``/sdapi/v1/sd-modules``), which ignores ``sd_vae``
        ("Managed by Forge") and takes the VAE as ``forge_additional_modules``; it knows only
        the VAEs found at launch (no API call refreshes that list), and drops an unknown
        name in silence, so refuse one it does not list."""
        async with s.get(f"{self.url}/sdapi/v1/sd-modules") as r:
            if r.status != 200:
                return False  # A1111 and the like: sd_vae
            modules = await r.json(content_type=None)
        names = {str(m.get("model_name")) for m in modules if isinstance(m, dict)} if isinstance(modules, list) else set()
        if Path(vae).name not in names:
            raise BackendError(f"{self.name} does not list the VAE {vae!r} (Forge lists the VAEs "
                               "found at its launch): relaunch it, linked to the store, after adding the file")
        return True

    async def _post(self, s: aiohttp.ClientSession, endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
        async with s.post(f"{self.url}/sdapi/v1/{endpoint}", json=data) as r:
            body = await r.json(content_type=None)
            if r.status != 200:
                raise BackendError(f"A1111 refused the job (HTTP {r.status}): {api_error(body)}")
        if not isinstance(body, dict) or not body.get("images"):
            raise BackendError("A1111 finished without images")
        return body

    async def _poll(self, s: aiohttp.ClientSession, report: Reporter) -> None:
        try:
            async with s.get(f"{self.url}/sdapi/v1/progress",
                             params={"skip_current_image": "false"},
                             timeout=aiohttp.ClientTimeout(total=max(2.0, self.poll_interval * 4))) as r:
                if r.status != 200:
                    return
                data = await r.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return  # the main call reports a dead server; a missed poll is harmless
        state = data.get("state") or {}
        steps = int(state.get("sampling_steps") or 0)
        # Idle (job_count 0) Forge keeps the last job's counters: they are not this job's.
        if steps and int(state.get("job_count") or 0) != 0:
            # A1111's own step count (img2img runs steps x denoise), over every batch.
            jobs = max(1, int(state.get("job_count") or 1))
            step = int(state.get("job_no") or 0) * steps + int(state.get("sampling_step") or 0)
            report.progress(min(step, steps * jobs), steps * jobs)
        image = data.get("current_image")
        if image:
            with contextlib.suppress(binascii.Error, ValueError):
                report.preview(base64.b64decode(image), "image/png")


def payload(req: JobRequest, seed: int, forge_modules: bool = False) -> dict[str, Any]:
    """The ``/sdapi/v1`` request body for ``req`` (LoRAs as ``<lora:name:weight>`` tags).
    ``forge_modules``: the VAE goes as Forge's ``forge_additional_modules`` (file names)."""
    prompt = req.prompt + "".join(f" <lora:{Path(lo.name).stem}:{lo.weight:g}>" for lo in req.loras)
    settings: dict[str, Any] = {"sd_model_checkpoint": req.checkpoint}
    if req.vae and forge_modules:
        settings["forge_additional_modules"] = [Path(req.vae).name]
    elif req.vae:
        settings["sd_vae"] = req.vae
    data: dict[str, Any] = {
        "prompt": prompt, "negative_prompt": req.negative_prompt, "seed": seed,
        "sampler_name": samplers()[req.sampler], "scheduler": schedulers()[req.scheduler],
        "steps": req.steps, "cfg_scale": req.cfg, "width": req.width, "height": req.height,
        "batch_size": req.batch_size, "n_iter": req.batch_count,
        "override_settings": settings, "send_images": True, "save_images": False,
    }
    if req.mode != "txt2img":
        assert req.init_image is not None
        data.update(init_images=[base64.b64encode(req.init_image).decode()],
                    denoising_strength=req.denoise, resize_mode=0)
    if req.mode == "inpaint":
        assert req.mask is not None
        data.update(mask=base64.b64encode(req.mask).decode(), mask_blur=req.mask_blur,
                    inpainting_fill=1,  # 1 = start from the original pixels
                    inpaint_full_res=req.inpaint_area == "only_masked",
                    inpaint_full_res_padding=req.only_masked_padding, inpainting_mask_invert=0)
    return data


def api_error(body: Any) -> str:
    """One line from an A1111 error body (FastAPI 422 ``detail`` list or 500 ``errors``)."""
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, list):
            return redact("; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}"
                                    for d in detail if isinstance(d, dict)))
        for key in ("errors", "error", "detail"):
            if body.get(key):
                return redact(str(body[key]))[:500]
    return redact(str(body))[:500]
