"""Python clients: ``generate(...)`` blocks (cells, scripts, the CLI), ``agenerate(...)``
awaits (any asyncio loop). Both go through the process's job queue, so jobs from Python,
the REST API and the panel share the WebUI fairly."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdpanel.storage import StorageRoot

from ._events import JobEvent
from ._jobs import Job
from ._service import GenerateService, get_service, read_image_arg


class GenerationFailed(RuntimeError):
    """The job failed or was cancelled; the message is the job's error."""

    def __init__(self, job: Job) -> None:
        self.job = job
        super().__init__(f"generation {job.state}: {job.error or 'no details'}")


@dataclass(frozen=True)
class GenerateResult:
    job_id: str
    seed: int
    images: list[Path]
    seeds: list[int]
    job: Job


def _prepare(prompt: str, params: dict[str, Any], backend_url: str | None, flavour: str | None,
             storage: str | os.PathLike[str] | StorageRoot | None) -> tuple[GenerateService, Job]:
    service = get_service(storage)
    if flavour == "builtin":
        service.use_builtin()
    elif backend_url:
        service.use_backend(backend_url, flavour or "comfyui")
    data = {"prompt": prompt, **params}
    for key in ("init_image", "mask"):
        if key in data:
            data[key] = read_image_arg(data[key])
    return service, service.submit(data)


def _result(job: Job) -> GenerateResult:
    if job.state != "succeeded":
        raise GenerationFailed(job)
    return GenerateResult(job.id, job.seed, [im.path for im in job.images],
                          [im.seed for im in job.images], job)


def generate(prompt: str, *, backend_url: str | None = None, flavour: str | None = None,
             storage: str | os.PathLike[str] | StorageRoot | None = None,
             timeout: float | None = None, on_event: Callable[[JobEvent], None] | None = None,
             **params: Any) -> GenerateResult:
    """Generate and wait. ``params`` are the job fields (mode, negative_prompt, checkpoint,
    loras, steps, cfg, seed, width, height, init_image, mask, ...); images may be paths or
    bytes. Raises ValidationError (bad fields), QueueFullError, NoBackendError,
    GenerationFailed, TimeoutError."""
    service, job = _prepare(prompt, params, backend_url, flavour, storage)
    deadline = None if timeout is None else time.monotonic() + timeout
    last = 0
    # Plain polling of the event log: works in a cell whose kernel loop is already running.
    while True:
        for event in job.events.since(last):
            last = event.id
            if on_event is not None:
                on_event(event)
        if job.future.done() and job.events.finished and not job.events.since(last):
            return _result(job)
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TimeoutError(f"job {job.id} did not finish in {timeout} s (it keeps running; "
                               "cancel it with sdpanel.generate.cancel)")
        with contextlib.suppress(concurrent.futures.TimeoutError):
            job.future.result(0.1 if on_event else left)


async def agenerate(prompt: str, *, backend_url: str | None = None, flavour: str | None = None,
                    storage: str | os.PathLike[str] | StorageRoot | None = None,
                    **params: Any) -> GenerateResult:
    """The async twin of :func:`generate`; cancelling the awaiting task cancels the job."""
    service, job = _prepare(prompt, params, backend_url, flavour, storage)
    try:
        await asyncio.wrap_future(job.future)
    except asyncio.CancelledError:
        service.queue.cancel(job.id)
        raise
    return _result(job)


def cancel(job_id: str, storage: str | os.PathLike[str] | StorageRoot | None = None) -> Job:
    return get_service(storage).queue.cancel(job_id)
