"""REST + Server-Sent Events API of the job queue, mounted by the sdpanel server
extension under ``<base_url>sdpanel/api/`` (see :data:`ROUTES`).

Every handler is authenticated and authorized by Jupyter; APIHandler checks XSRF on
POST / DELETE. The queue lives in the server process, on the runtime's loop.
"""

from __future__ import annotations

import asyncio
import json
from importlib.resources import files
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from tornado.iostream import StreamClosedError

from sdpanel.server._handlers import API_PREFIX, SdpanelHandler
from sdpanel.storage import StorageRoot

from ._builtin import EngineUnavailable
from ._events import JobEvent
from ._queue import JobNotFound, NoBackendError, QueueFullError
from ._service import GenerateService, default_storage, get_service
from ._validate import ValidationError, options

HEARTBEAT = 15.0  # seconds between SSE keep-alive comments (proxies drop idle streams)
SSE_TYPE = "text/event-stream; charset=utf-8"


def _service(store: StorageRoot, refresh: bool = False) -> GenerateService:
    """The server process's service for ``store``. ``refresh``: also pick up WebUIs
    started or stopped since the last look, and the explicitly configured ones."""
    service = get_service(store)
    if refresh:
        service.follow_backends()
    return service


class _JobsBase(SdpanelHandler):
    def service(self, refresh: bool = False) -> GenerateService:
        # The store is resolved once per server (settings + platform detection cost ~1 ms).
        store = self.settings.get("sdpanel_generate_store")
        if store is None:
            store = self.settings["sdpanel_generate_store"] = default_storage()
        return _service(store, refresh)

    def job_url(self, job_id: str, *rest: str) -> str:
        return url_path_join(self.base_url, API_PREFIX, "jobs", job_id, *rest)

    def job_json(self, job: Any) -> dict[str, Any]:
        image_url = self.job_url("{id}", "images", "{n}")
        data: dict[str, Any] = job.to_dict(image_url=image_url)
        data["events_url"] = self.job_url(job.id, "events")
        return data

    def fail(self, status: int, message: str, **extra: Any) -> None:
        self.set_status(status)
        self.write_json({"message": message, **extra})

    def lookup(self, job_id: str) -> Any:
        try:
            return self.service().queue.get(job_id)
        except JobNotFound as exc:
            self.fail(404, str(exc))
            return None


class JobsHandler(_JobsBase):
    """``POST /jobs`` queue a job; ``GET /jobs`` list jobs (``?state=`` filters)."""

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            return self.fail(400, f"body is not JSON ({exc})", errors={"body": "send a JSON object"})
        except RecursionError:  # the parser's stack ends at ~1000 levels: a client's fault
            return self.fail(400, "body nests JSON too deeply: send a job as one flat JSON object",
                             errors={"body": "send a JSON object"})
        if not isinstance(data, dict):
            return self.fail(400, "body must be a JSON object", errors={"body": "send a JSON object"})
        service = await asyncio.to_thread(self.service, True)
        try:
            if data.pop("backend", None) == "builtin":  # ask for the built-in engine
                service.use_builtin()
            request = await asyncio.to_thread(service.validate, data)  # images decode off-loop
            # The service, not the queue: with no WebUI it falls back to the built-in engine.
            job = await asyncio.to_thread(service.submit, request)
        except ValidationError as exc:
            return self.fail(400, str(exc), errors=exc.errors)
        except QueueFullError as exc:
            self.set_header("Retry-After", "10")
            return self.fail(429, str(exc))
        except (NoBackendError, EngineUnavailable) as exc:
            return self.fail(503, str(exc))
        self.set_status(201)
        self.set_header("Location", self.job_url(job.id))
        self.write_json(self.job_json(job))

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        state = self.get_query_argument("state", None)
        jobs = [j for j in self.service().queue.jobs() if state in (None, j.state)]
        self.write_json({"jobs": [self.job_json(j) for j in reversed(jobs)]})


class JobHandler(_JobsBase):
    """``GET /jobs/{id}`` one job; ``DELETE /jobs/{id}`` cancel it."""

    @tornado.web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        job = self.lookup(job_id)
        if job is not None:
            self.write_json(self.job_json(job))

    @tornado.web.authenticated
    @authorized
    async def delete(self, job_id: str) -> None:
        job = self.lookup(job_id)
        if job is not None:
            self.service().queue.cancel(job_id)
            self.write_json(self.job_json(job))


class JobEventsHandler(_JobsBase):
    """``GET /jobs/{id}/events``: Server-Sent Events until the job ends. Resume with the
    ``Last-Event-ID`` header (browsers send it on reconnect) or ``?last_event_id=``."""

    @tornado.web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        job = self.lookup(job_id)
        if job is None:
            return
        raw = self.request.headers.get("Last-Event-ID") or self.get_query_argument("last_event_id", "0")
        try:
            last = max(0, int(raw))
        except ValueError:
            return self.fail(400, f"Last-Event-ID {raw!r} is not an event id (a whole number)")
        self.set_header("Content-Type", SSE_TYPE)
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")  # nginx-style proxies: stream, don't buffer
        self.write("retry: 2000\n\n")
        try:
            await self.flush()
            async for event in job.events.follow(last, heartbeat=HEARTBEAT):
                self.write(": keep-alive\n\n" if event is None else self._enrich(job.id, event).sse())
                await self.flush()
        except StreamClosedError:
            return  # the client went away; it resumes with Last-Event-ID
        self.finish(set_content_type=SSE_TYPE)

    def _enrich(self, job_id: str, event: JobEvent) -> JobEvent:
        if event.kind != "done":
            return event
        images = [{**im, "url": self.job_url(job_id, "images", str(im["n"]))}
                  for im in event.data.get("images", [])]
        return JobEvent(event.id, event.kind, {**event.data, "images": images})


class JobImageHandler(_JobsBase):
    """``GET /jobs/{id}/images/{n}``: the n-th output PNG (parameters chunk included)."""

    @tornado.web.authenticated
    @authorized
    async def get(self, job_id: str, n: str) -> None:
        job = self.lookup(job_id)
        if job is None:
            return
        try:
            path = self.service().queue.image_path(job_id, int(n))
            data = await asyncio.to_thread(path.read_bytes)
        except (IndexError, OSError) as exc:
            return self.fail(404, str(exc) if isinstance(exc, IndexError)
                             else f"image file is gone from the outputs folder ({exc.strerror})")
        self.set_header("Content-Disposition", f'inline; filename="{path.name}"')
        self.set_header("Cache-Control", "private, max-age=86400")  # outputs never change
        self.finish(data, set_content_type="image/png")  # APIHandler defaults to JSON


class OptionsHandler(_JobsBase):
    """``GET /generate/options``: samplers, schedulers, limits, the store's models and the
    backends (for the Generate form)."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        service = await asyncio.to_thread(self.service, True)
        data = await asyncio.to_thread(options, service.storage)
        data["backends"] = service.queue.backend_status()
        self.write_json(data)


class OpenAPIHandler(SdpanelHandler):
    """``GET /openapi.json``: the OpenAPI document of these routes."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(openapi_document())


def openapi_document() -> dict[str, Any]:
    return dict(json.loads(files("sdpanel.generate").joinpath("openapi.json").read_text("utf-8")))


# (pattern relative to <base_url>sdpanel/api/, handler): mounted by sdpanel.server.
JOB_ID = r"(?P<job_id>[A-Za-z0-9_-]+)"
ROUTES: list[tuple[str, type[tornado.web.RequestHandler]]] = [
    ("jobs", JobsHandler),
    (f"jobs/{JOB_ID}", JobHandler),
    (f"jobs/{JOB_ID}/events", JobEventsHandler),
    (f"jobs/{JOB_ID}/images/(?P<n>[0-9]+)", JobImageHandler),
    ("generate/options", OptionsHandler),
    ("openapi.json", OpenAPIHandler),
]
