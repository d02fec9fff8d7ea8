"""The Generate tab: a form (prompt, mode, input image + painted mask, parameters, models
from the store), the queue with progress and live previews, and a gallery of results.

Flow: the browser sends ``generate.submit`` with the form (images as data URLs in the
payload: a one-off message, never a trait); the :class:`GenerateController` validates and
queues it on the process's generation service (the same queue ``sdpanel.generate`` and the
REST API of this process use) from the runtime loop. The queue publishes on the bus topic
``generate``; the controller folds those events into the small ``generate_state`` trait
(≤ 10 flushes/s). Previews and finished PNGs go to the browser as custom messages (the
PNG bytes as a binary buffer), so the saved notebook never carries images.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import traitlets

from sdpanel.runtime import Publisher
from sdpanel.settings import redact

from ._controller import BusController, PanelSlot
from ._registry import register_tab

if TYPE_CHECKING:
    from sdpanel.generate import GenerateService, Job
    from sdpanel.runtime import Event


TOPIC = "generate"
JOBS_CAP = 24  # jobs listed in the trait (newest); older ones stay in the outputs folder
TEXT_CAP = 300  # prompt characters kept per listed job
RESEND_CAP = 16  # images re-sent to a view that opens later (a reloaded page)
PREVIEW_INTERVAL = 0.2  # seconds between preview messages of one job
# Request fields a listed job shows in the gallery (images and priority stay out).
SHOWN = ("prompt", "negative_prompt", "checkpoint", "vae", "loras", "sampler", "scheduler",
         "steps", "cfg", "width", "height", "batch_size", "batch_count", "denoise",
         "mask_blur", "inpaint_area")


def job_row(job: Job) -> dict[str, Any]:
    """One job → what its queue entry and gallery card show (a few hundred bytes)."""
    params = {k: job.params.get(k) for k in SHOWN if k in job.params}
    for key in ("prompt", "negative_prompt"):
        text = str(params.get(key) or "")
        params[key] = text if len(text) <= TEXT_CAP else text[:TEXT_CAP] + "…"
    if job.request.mode == "txt2img":
        for key in ("denoise", "mask_blur", "inpaint_area"):
            params.pop(key, None)
    elif job.request.mode == "img2img":
        params.pop("mask_blur", None)
        params.pop("inpaint_area", None)
    return {
        "id": job.id, "state": job.state, "mode": job.request.mode, "seed": job.seed,
        "step": job.step, "steps": job.steps, "error": redact(job.error or ""),
        "backend": job.backend or "", "created": job.created, "finished": job.finished,
        "images": [{"n": n, "seed": im.seed, "filename": im.path.name} for n, im in enumerate(job.images)],
        "params": params,
    }


class GenerateController(BusController):
    """Feeds one panel. Bus callbacks run on the runtime loop; actions run on the kernel
    thread and only hand work to the runtime."""

    def __init__(self, panel: Any, service_factory: Callable[[], GenerateService] | None = None,
                 *, max_rate: float = 10.0) -> None:
        super().__init__(panel, Publisher(panel, max_rate=max_rate))
        # Names this panel in state and messages: the browser keys its image cache by it (each
        # anywidget view gets its own model proxy, so the proxy cannot be the key).
        self.uid = secrets.token_hex(6)
        self._factory = service_factory or _default_service
        self._service: GenerateService | None = None
        self._lock = threading.Lock()
        self._rows: dict[str, dict[str, Any]] = {}
        self._hidden: set[str] = set()  # cleared from the view by the user
        self._errors: dict[str, str] = {}
        self._message = ""
        self._pending = 0  # submissions being validated
        self._accepted = ""  # the browser's ref of the last accepted submission
        self._last_preview: dict[str, float] = {}
        self._options: dict[str, Any] = {}

    # ---- life cycle --------------------------------------------------------------------
    def attach(self) -> None:
        # "downloads": a model that finished downloading appears in the pickers by itself.
        self.subscribe({TOPIC, "downloads"})
        self.refresh()

    @property
    def service(self) -> GenerateService:
        if self._service is None:
            self._service = self._factory()
        return self._service

    # ---- intents (kernel thread) -------------------------------------------------------
    def refresh(self, _msg: dict[str, Any] | None = None) -> None:
        """(Re)load the form's options: samplers, limits, the store's models, backends."""
        self.rt.submit(self._load_options(), name="generate-panel-options", topic="panel")

    def submit(self, msg: dict[str, Any]) -> None:
        ref = str(msg.get("ref") or "")
        data = {k: v for k, v in msg.items() if k != "ref"}
        with self._lock:
            self._pending += 1
            self._message = ""
        self._push()
        self.rt.submit(self._submit(data, ref), name="generate-panel-submit", topic="panel")

    def cancel(self, msg: dict[str, Any]) -> None:
        job_id = str(msg.get("id") or "")
        from sdpanel.generate import JobNotFound

        try:
            job = self.service.queue.cancel(job_id)
        except JobNotFound as exc:
            self.panel.toast(str(exc), level="error")
            return
        self._upsert(job)

    def clear(self, _msg: dict[str, Any] | None = None) -> None:
        """Hide finished jobs from the list (their files stay in the outputs folder)."""
        with self._lock:
            done = [i for i, r in self._rows.items() if r["state"] not in ("queued", "running")]
            self._hidden.update(done)
            for i in done:
                self._rows.pop(i, None)
        self._push()

    def hello(self, msg: dict[str, Any]) -> None:
        """A view opened: send it the images it does not hold yet (newest first)."""
        have = {str(k) for k in msg.get("have") or []}
        with self._lock:
            rows = sorted(self._rows.values(), key=lambda r: r["created"], reverse=True)
        wanted = [(r["id"], im["n"]) for r in rows for im in r["images"]
                  if f"{r['id']}/{im['n']}" not in have][:RESEND_CAP]
        if wanted:
            self.rt.submit(self._send_images(wanted), name="generate-panel-images", topic="panel")

    # ---- runtime loop ------------------------------------------------------------------
    async def _load_options(self) -> None:
        from sdpanel.generate._validate import options

        try:
            service = self.service
            await asyncio.to_thread(service.follow_backends)
            opts = await asyncio.to_thread(options, service.storage)
            opts["backends"] = service.queue.backend_status()
            opts["storage"] = str(service.storage.path)
            opts["error"] = ""
            for job in service.queue.jobs():  # jobs queued before this panel opened
                self._upsert(job, push=False)
        except Exception as exc:  # noqa: BLE001 - the tab shows why, with a retry
            opts = {"error": redact(f"The generation service could not start: {exc}")}
        self._options = opts
        self.publisher.update(generate_options=opts)
        self._push()

    async def _submit(self, data: dict[str, Any], ref: str) -> None:
        from sdpanel.generate import NoBackendError, QueueFullError, ValidationError

        errors: dict[str, str] = {}
        message = ""
        try:
            service = self.service
            await asyncio.to_thread(service.follow_backends)
            backends = service.queue.backend_status()
            if self._options.get("samplers") and backends != self._options.get("backends"):
                # A WebUI started (or stopped) since the form loaded: the notice follows.
                self._options = {**self._options, "backends": backends}
                self.publisher.update(generate_options=self._options)
            request = await asyncio.to_thread(service.validate, data)  # images decode off-loop
            # The service, not the queue: with no WebUI it falls back to the built-in engine.
            job = await asyncio.to_thread(service.submit, request)
            self._upsert(job, push=False)
            if service.queue.backend_status() != backends:  # the built-in engine joined
                self._options = {**self._options, "backends": service.queue.backend_status()}
                self.publisher.update(generate_options=self._options)
        except ValidationError as exc:
            errors = {k: redact(v) for k, v in exc.errors.items()}
            message = f"Fix the marked field{'s' if len(errors) > 1 else ''} and generate again."
        except (NoBackendError, QueueFullError) as exc:
            message = redact(str(exc))
        except Exception as exc:  # noqa: BLE001 - the panel never dies: say why
            message = redact(f"Could not queue the job: {type(exc).__name__}: {exc}")
        with self._lock:
            self._pending = max(0, self._pending - 1)
            self._errors, self._message = errors, message
            if not errors and not message:
                self._accepted = ref
        self._push()

    def _on_event(self, event: Event) -> None:
        from sdpanel.generate import JobNotFound
        from sdpanel.runtime import ProgressEvent, StateEvent

        if event.topic == "downloads":
            if isinstance(event, StateEvent) and event.state == "done":
                self.refresh()
            return
        if self._service is None or event.key in self._hidden:
            return
        if isinstance(event, StateEvent) and event.state == "unloaded":  # a WebUI took the GPU
            self.panel.toast(str(event.data.get("message") or ""), level="info")
            return
        try:
            job = self._service.queue.get(event.key)
        except JobNotFound:
            return  # a job of another store's queue
        if isinstance(event, StateEvent) and event.state == "preview":
            self._preview(job.id, str(event.data.get("image") or ""))
            return
        if isinstance(event, StateEvent | ProgressEvent):
            self._upsert(job)
        if isinstance(event, StateEvent) and event.state == "succeeded":
            self.rt.submit(self._send_images([(job.id, n) for n in range(len(job.images))]),
                           name="generate-panel-images", topic="panel")

    def _preview(self, job_id: str, image: str) -> None:
        now = time.monotonic()
        if not image or now - self._last_preview.get(job_id, 0.0) < PREVIEW_INTERVAL:
            return
        self._last_preview[job_id] = now
        self.cue({"type": "generate.preview", "id": job_id, "image": image})

    async def _send_images(self, wanted: list[tuple[str, int]]) -> None:
        for job_id, n in wanted:
            try:
                path = self.service.queue.image_path(job_id, n)
                data = await asyncio.to_thread(path.read_bytes)
            except (KeyError, IndexError, OSError):
                continue  # gone from the queue or the outputs folder: the card says so
            self.cue({"type": "generate.image", "id": job_id, "n": n, "filename": path.name}, [data])

    # ---- trait and messages --------------------------------------------------------------
    def _upsert(self, job: Job, push: bool = True) -> None:
        with self._lock:
            if job.id in self._hidden:
                return
            self._rows[job.id] = job_row(job)
            if job.done:
                self._last_preview.pop(job.id, None)
        if push:
            self._push()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            rows = sorted(self._rows.values(), key=lambda r: r["created"], reverse=True)
            live = [r for r in rows if r["state"] in ("queued", "running")]
            done = [r for r in rows if r["state"] not in ("queued", "running")]
            keep = live + done[:max(0, JOBS_CAP - len(live))]
            kept = {r["id"] for r in keep}
            for r in rows:
                if r["id"] not in kept:
                    self._rows.pop(r["id"], None)
            return {"uid": self.uid, "jobs": sorted(keep, key=lambda r: r["created"], reverse=True),
                    "errors": dict(self._errors), "message": self._message,
                    "pending": self._pending, "accepted": self._accepted}

    def _push(self) -> None:
        self.publisher.update(generate_state=self.snapshot())

    def cue(self, msg: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        # No comm (a closed panel): a preview is not worth a crash.
        msg = {**msg, "uid": self.uid}
        with contextlib.suppress(Exception):
            self.panel.send(msg, buffers) if buffers else self.panel.send(msg)


def _default_service() -> GenerateService:
    from sdpanel.generate import get_service

    from ._services import storage_root

    return get_service(storage_root())


# ---- registry glue -------------------------------------------------------------------------

_slot = PanelSlot("_sdp_generate", "Generate", GenerateController)
controller = _slot.get


register_tab(
    "generate",
    "Generate",
    traits={
        "generate_state": traitlets.Dict(),
        "generate_options": traitlets.Dict(),
    },
    actions={
        "generate.submit": lambda p, m: controller(p).submit(m),
        "generate.cancel": lambda p, m: controller(p).cancel(m),
        "generate.clear": lambda p, m: controller(p).clear(m),
        "generate.refresh": lambda p, m: controller(p).refresh(m),
        "generate.hello": lambda p, m: controller(p).hello(m),
    },
    attach=_slot.attach,
    order=50,  # after Launch (40): the WebUI runs, now make images
)
