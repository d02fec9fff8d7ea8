"""ComfyUI backend: upload inputs, queue API-format graphs, follow the WebSocket for
progress and previews, fetch outputs from ``/history`` and ``/view``, interrupt."""

from __future__ import annotations

import json
import struct
import uuid
from typing import Any

import aiohttp

from sdpanel.settings import redact

from ._backend import HTTPBackend, Reporter, connection_error
from ._graph import OUTPUT_NODE, build_graph
from ._jobs import BackendError, Job, JobCancelled
from ._png import image_info

# Binary WebSocket frames start with a 4-byte event type. PREVIEW_IMAGE: 4-byte image type
# (1 JPEG, 2 PNG) then the bytes; PREVIEW_IMAGE_WITH_METADATA (newer ComfyUI): 4-byte JSON
# length, JSON metadata (with "image_type"), then the bytes.
PREVIEW_IMAGE, PREVIEW_IMAGE_WITH_METADATA = 1, 4
PREVIEW_MIME = {1: "image/jpeg", 2: "image/png"}
SAMPLER_NODE = "sampler"
FEATURE_FLAGS = {"supports_preview_metadata": True}


def parse_preview(data: bytes) -> tuple[bytes, str] | None:
    """(image bytes, mime type) of a preview frame, None for other binary frames."""
    if len(data) <= 8:
        return None
    event, word = struct.unpack(">II", data[:8])
    if event == PREVIEW_IMAGE and word in PREVIEW_MIME:
        return data[8:], PREVIEW_MIME[word]
    if event == PREVIEW_IMAGE_WITH_METADATA and 8 + word <= len(data):
        try:
            meta = json.loads(data[8:8 + word])
        except ValueError:
            return None
        return data[8 + word:], str(meta.get("image_type") or "image/jpeg")
    return None


class ComfyUIBackend(HTTPBackend):
    flavour = "comfyui"
    ping_path = "/system_stats"

    def __init__(self, url: str, name: str | None = None, timeout: float = 30.0) -> None:
        super().__init__(url, name, timeout)
        self._prompt_id: str | None = None

    async def interrupt(self) -> None:
        s = await self.session()
        prompt_id = self._prompt_id
        # Drop it from ComfyUI's queue too in case it has not started yet.
        if prompt_id:
            async with s.post(f"{self.url}/queue", json={"delete": [prompt_id]}) as r:
                r.raise_for_status()
        async with s.post(f"{self.url}/interrupt", json={"prompt_id": prompt_id} if prompt_id else {}) as r:
            r.raise_for_status()

    async def _run(self, job: Job, report: Reporter) -> list[bytes]:
        req = job.request
        s = await self.session()
        client_id = uuid.uuid4().hex
        async with s.ws_connect(f"{self.url}/ws?clientId={client_id}", heartbeat=30) as ws:
            # Must be the first message: ComfyUI then sends previews with their metadata
            # (PREVIEW_IMAGE_WITH_METADATA) instead of the old bare frames.
            await ws.send_str(json.dumps({"type": "feature_flags", "data": FEATURE_FLAGS}))
            images: dict[str, str] = {}
            if req.init_image is not None:
                images["init_image"] = await self._upload(s, req.init_image, f"{job.id}-init")
            if req.mask is not None:
                images["mask"] = await self._upload(s, req.mask, f"{job.id}-mask")
            outputs: list[bytes] = []
            total = req.steps * req.batch_count
            for i in range(req.batch_count):
                if job.cancel_requested.is_set():
                    raise JobCancelled()
                graph = build_graph(req, job.seed + i, images)
                prompt_id = await self._queue_prompt(s, graph, client_id)
                self._prompt_id = prompt_id
                try:
                    saved = await self._follow(ws, prompt_id, report, i * req.steps, total)
                finally:
                    self._prompt_id = None
                outputs += await self._outputs(s, prompt_id, saved)
            return outputs

    async def _upload(self, s: aiohttp.ClientSession, data: bytes, stem: str) -> str:
        ext = {"png": "png", "jpeg": "jpg", "webp": "webp"}[image_info(data).format]
        form = aiohttp.FormData()
        form.add_field("image", data, filename=f"sdpanel-{stem}.{ext}", content_type=f"image/{ext}")
        form.add_field("type", "input")
        form.add_field("overwrite", "true")
        async with s.post(f"{self.url}/upload/image", data=form) as r:
            if r.status != 200:
                raise BackendError(f"ComfyUI refused the uploaded image (HTTP {r.status}): "
                                   f"{redact((await r.text())[:300])}")
            info = await r.json()
        sub = info.get("subfolder") or ""
        return f"{sub}/{info['name']}" if sub else str(info["name"])

    async def _queue_prompt(self, s: aiohttp.ClientSession, graph: dict[str, Any], client_id: str) -> str:
        async with s.post(f"{self.url}/prompt", json={"prompt": graph, "client_id": client_id}) as r:
            body = await r.json(content_type=None)
            if r.status != 200:
                raise BackendError("ComfyUI refused the job: " + prompt_error(body))
        return str(body["prompt_id"])

    async def _follow(self, ws: aiohttp.ClientWebSocketResponse, prompt_id: str, report: Reporter,
                      offset: int, total: int) -> list[dict[str, Any]]:
        """Read the WebSocket until our prompt finishes; raise on error / interrupt.

        Real ComfyUI sends ``executed`` (our output node, with its files) → ``execution_success``
        (history still empty) → ``executing`` with ``node: null`` (history saved), so the
        end is the last one; the files from ``executed`` are returned as a second source."""
        saved: list[dict[str, Any]] = []
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                preview = parse_preview(msg.data)
                if preview is not None:
                    report.preview(*preview)
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise connection_error(self.flavour, self.url, ConnectionResetError(
                    f"WebSocket closed ({msg.type.name.lower()})"))
            try:
                message = json.loads(msg.data)
            except ValueError:
                continue
            kind, data = message.get("type"), message.get("data") or {}
            if data.get("prompt_id") not in (None, prompt_id):
                continue  # somebody else's prompt on a shared ComfyUI
            if kind == "progress" and data.get("node") in (None, SAMPLER_NODE):
                # Only the sampler's steps: other nodes (VAE tiles, upscalers) count their own.
                report.progress(offset + int(data.get("value", 0)), total)
            elif kind == "execution_error":
                raise BackendError(
                    f"ComfyUI failed in node {data.get('node_id')} ({data.get('node_type')}): "
                    f"{data.get('exception_type', 'error')}: {redact(str(data.get('exception_message', '')).strip())}")
            elif kind == "execution_interrupted":
                raise JobCancelled()
            elif kind == "executed" and data.get("node") == OUTPUT_NODE:
                saved += list((data.get("output") or {}).get("images") or [])
            elif kind == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                return saved

    async def _outputs(self, s: aiohttp.ClientSession, prompt_id: str,
                       saved: list[dict[str, Any]] | None = None) -> list[bytes]:
        async with s.get(f"{self.url}/history/{prompt_id}") as r:
            r.raise_for_status()
            history = (await r.json()).get(prompt_id) or {}
        files = ((history.get("outputs") or {}).get(OUTPUT_NODE) or {}).get("images") or saved or []
        if not files:
            raise BackendError(f"ComfyUI finished prompt {prompt_id} without images "
                               "(its history has no output for the output node)")
        out = []
        for f in files:
            params = {"filename": f["filename"], "subfolder": f.get("subfolder", ""),
                      "type": f.get("type", "output")}
            async with s.get(f"{self.url}/view", params=params) as r:
                r.raise_for_status()
                out.append(await r.read())
        return out


def prompt_error(body: Any) -> str:
    """One line from ComfyUI's ``/prompt`` 400 answer (``error`` + ``node_errors``)."""
    if not isinstance(body, dict):
        return redact(str(body))[:300]
    err = body.get("error") or {}
    parts = [str(err.get("message") or err) if isinstance(err, dict) else str(err)]
    if isinstance(err, dict) and err.get("details"):
        parts.append(str(err["details"]))
    for node_id, node in (body.get("node_errors") or {}).items():
        for e in node.get("errors", []):
            parts.append(f"node {node_id} ({node.get('class_type')}): {e.get('message')}"
                         + (f" — {e['details']}" if e.get("details") else ""))
    return redact("; ".join(p for p in parts if p)) or "unknown error"
