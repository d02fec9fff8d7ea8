"""The generation queue: priorities, one running job per backend, several backends shared
round robin, cancel that interrupts the WebUI, outputs saved with their parameters.

Thread-safe entry points (``submit``, ``cancel``, ``get``, ``jobs``) may be called from
any thread (the jupyter-server loop, a kernel cell); the work runs on ``loop`` (the
runtime's), which is the only place a job changes after it is queued.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import heapq
import itertools
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sdpanel.runtime import ErrorEvent, EventBus, ProgressEvent, StateEvent
from sdpanel.settings import redact
from sdpanel.storage import StorageRoot

from ._backend import Backend
from ._jobs import BackendError, Job, JobCancelled, JobImage, JobRequest, parameters_text
from ._png import with_text

log = logging.getLogger("sdpanel.generate")
TOPIC = "generate"


class QueueFullError(RuntimeError):
    """The queue refused a job because ``max_queued`` jobs are already waiting."""


class NoBackendError(RuntimeError):
    """No WebUI to run jobs on."""


class JobNotFound(KeyError):
    def __str__(self) -> str:
        return f"no job with id {self.args[0]!r} (finished jobs are kept for a while only)"


@dataclass
class _Slot:
    backend: Backend
    task: asyncio.Task[None] | None = None
    job: Job | None = None
    last_started: float = 0.0
    down: bool = False  # lost its connection last time: used only when no other is up
    retired: bool = False  # removed while running a job: dropped when that job ends
    done: int = 0


@dataclass(order=True)
class _Entry:
    key: tuple[int, int]
    job: Job = field(compare=False)


class JobQueue:
    def __init__(self, bus: EventBus, storage: StorageRoot, loop: asyncio.AbstractEventLoop,
                 *, max_queued: int = 64, keep_finished: int = 500,
                 cancel_grace: float = 5.0) -> None:
        self.bus, self.storage, self.loop = bus, storage, loop
        self.max_queued, self.keep_finished, self.cancel_grace = max_queued, keep_finished, cancel_grace
        self._lock = threading.RLock()
        self._heap: list[_Entry] = []
        self._order = itertools.count()
        self._jobs: dict[str, Job] = {}
        self._slots: dict[str, _Slot] = {}

    # ---- backends -------------------------------------------------------------------
    def add_backend(self, backend: Backend) -> None:
        with self._lock:
            if backend.name not in self._slots:
                self._slots[backend.name] = _Slot(backend)
        self.loop.call_soon_threadsafe(self._dispatch)

    def remove_backend(self, name: str) -> None:
        """Stop using a backend (its WebUI stopped); a job running on it finishes first."""
        with self._lock:
            slot = self._slots.get(name)
            if slot is None:
                return
            slot.retired = True
            if slot.job is None:
                del self._slots[name]
                self.loop.call_soon_threadsafe(lambda: self.loop.create_task(slot.backend.close()))

    def backend_status(self) -> list[dict[str, object]]:
        """Each backend: name, flavour, url, busy (its running job id), down, jobs done."""
        with self._lock:
            return [{"name": s.backend.name, "flavour": s.backend.flavour, "url": s.backend.url,
                     "job": s.job.id if s.job else None, "down": s.down, "done": s.done}
                    for s in self._slots.values() if not s.retired]

    @property
    def backends(self) -> list[Backend]:
        with self._lock:
            return [s.backend for s in self._slots.values()]

    # ---- thread-safe API ------------------------------------------------------------
    def submit(self, request: JobRequest) -> Job:
        """Queue a validated request. Raises QueueFullError / NoBackendError."""
        seed = request.seed if request.seed >= 0 else random.randint(0, 2**32 - 1)
        with self._lock:
            if not self._slots:
                raise NoBackendError(
                    "No WebUI is running to generate with: launch one (the Launch cell or "
                    "`sdpanel launch <webui>`) or pass a backend URL.")
            waiting = sum(1 for e in self._heap if e.job.state == "queued")
            if waiting >= self.max_queued:
                raise QueueFullError(
                    f"The generation queue is full ({waiting} jobs waiting, the limit is "
                    f"{self.max_queued}): wait for jobs to finish or cancel some, then retry.")
            job = Job(request, seed)
            self._jobs[job.id] = job
            heapq.heappush(self._heap, _Entry((-request.priority, next(self._order)), job))
            position = waiting + 1
        job.events.append("queued", {"state": "queued", "position": position, "seed": seed})
        self.bus.publish(StateEvent(topic=TOPIC, key=job.id, state="queued", data={"position": position}))
        self.loop.call_soon_threadsafe(self._dispatch)
        return job

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once, or interrupt a running one. Finished: no-op."""
        with self._lock:
            job = self.get(job_id)
            if job.done:
                return job
            job.cancel_requested.set()
            if job.state == "queued":
                self._finish(job, "cancelled", "cancelled before it started")
                return job
        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(self._interrupt(job)))
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created)

    # ---- on the loop ----------------------------------------------------------------
    def _pick_slot(self) -> _Slot | None:
        live = [s for s in self._slots.values() if not s.retired]
        free = [s for s in live if s.job is None]
        up = [s for s in free if not s.down]
        if not up and any(not s.down for s in live):
            return None  # a healthy backend will be free soon: don't hand work to a dead one
        pool = up or free
        # Least recently started first: several WebUIs take turns (round robin).
        return min(pool, key=lambda s: s.last_started) if pool else None

    def _dispatch(self) -> None:
        if self.loop.is_closed() or not self.loop.is_running():
            return  # the runtime is shutting down
        with self._lock:
            while self._heap:
                while self._heap and self._heap[0].job.state != "queued":
                    heapq.heappop(self._heap)
                if not self._heap:
                    return
                slot = self._pick_slot()
                if slot is None:
                    return
                job = heapq.heappop(self._heap).job
                slot.job, slot.last_started = job, time.monotonic()
                job.state, job.started, job.backend = "running", time.time(), slot.backend.name
                slot.task = self.loop.create_task(self._run(slot, job))

    async def _run(self, slot: _Slot, job: Job) -> None:
        backend = slot.backend
        job.events.append("running", {"state": "running", "backend": backend.name, "seed": job.seed})
        self.bus.publish(StateEvent(topic=TOPIC, key=job.id, state="running", data={"backend": backend.name}))
        try:
            images = await backend.run(job, _Reporter(self, job))
            if job.cancel_requested.is_set():
                raise JobCancelled()
            job.images = await asyncio.to_thread(self._save, job, images)
            slot.down = False
            self._finish(job, "succeeded")
        except (JobCancelled, asyncio.CancelledError):
            self._finish(job, "cancelled", "cancelled while running")
        except BackendError as exc:
            slot.down = bool(getattr(exc, "connection_lost", False))
            cancelled = job.cancel_requested.is_set()
            self._finish(job, "cancelled" if cancelled else "failed",
                         "cancelled while running" if cancelled else str(exc))
        except Exception as exc:  # a bug or an odd answer: fail this job, keep the queue going
            log.exception("generation job %s failed", job.id)
            self._finish(job, "failed", f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                slot.job, slot.task = None, None
                slot.done += 1
                if slot.retired:
                    self._slots.pop(backend.name, None)
            if slot.retired:
                await backend.close()
            self._dispatch()

    async def _interrupt(self, job: Job) -> None:
        with self._lock:
            slot = next((s for s in self._slots.values() if s.job is job), None)
        if slot is None or slot.task is None:
            return
        task = slot.task
        try:
            await asyncio.wait_for(slot.backend.interrupt(), self.cancel_grace)
        except Exception as exc:  # the WebUI may be gone; cancelling our side still works
            log.warning("interrupting %s failed: %s", slot.backend.name, redact(str(exc)))
        # The backend normally returns promptly after an interrupt; if not, stop waiting.
        # A backend may need longer (the built-in engine finishes its step first).
        grace = max(self.cancel_grace, float(getattr(slot.backend, "cancel_grace", 0.0)))
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(task), grace)
        if not task.done():
            task.cancel()

    def _finish(self, job: Job, state: str, message: str = "") -> None:
        with self._lock:
            if job.done:
                return
            job.state, job.finished, job.error = state, time.time(), redact(message)  # type: ignore[assignment]
            if state == "succeeded":
                job.step = job.steps
            job.release_inputs()
            self._trim()
        if state == "succeeded":
            data = {"state": state, "seed": job.seed,
                    "images": [{"n": n, "seed": im.seed, "filename": im.path.name}
                               for n, im in enumerate(job.images)]}
            job.events.append("done", data)
            # In-process subscribers (panels) get the paths too.
            self.bus.publish(StateEvent(topic=TOPIC, key=job.id, state=state, data={
                **data, "paths": [str(im.path) for im in job.images]}))
        else:
            job.events.append("error", {"state": state, "message": job.error})
            self.bus.publish(StateEvent(topic=TOPIC, key=job.id, state=state, data={"error": job.error}))
            if state == "failed":
                self.bus.publish(ErrorEvent(topic=TOPIC, key=job.id, message=job.error,
                                            error_type="GenerationFailed"))
        if not job.future.done():
            job.future.set_result(job)

    def _trim(self) -> None:
        finished = [j for j in self._jobs.values() if j.done]
        for old in sorted(finished, key=lambda j: j.finished or 0)[:max(0, len(finished) - self.keep_finished)]:
            del self._jobs[old.id]

    def _save(self, job: Job, images: list[bytes]) -> list[JobImage]:
        """PNG files in ``outputs/<date>/`` with the A1111 ``parameters`` chunk."""
        folder = self.storage.outputs_dir / time.strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        per_batch = max(1, job.request.batch_size)
        saved = []
        for n, png in enumerate(images):
            seed = job.seed + n // per_batch  # each batch of a count gets the next seed
            path = folder / f"{job.id}-{n:02d}.png"
            tmp = path.with_suffix(".png.part")
            tmp.write_bytes(with_text(png, "parameters", parameters_text(job.request, seed)))
            tmp.replace(path)
            saved.append(JobImage(path, seed))
        return saved

    def image_path(self, job_id: str, n: int) -> Path:
        job = self.get(job_id)
        if not 0 <= n < len(job.images):
            raise IndexError(f"job {job_id} has {len(job.images)} image(s); there is no #{n}")
        return job.images[n].path


class _Reporter:
    def __init__(self, queue: JobQueue, job: Job) -> None:
        self.queue, self.job = queue, job

    def progress(self, step: int, steps: int) -> None:
        job = self.job
        job.step, job.steps = step, max(steps, 1)
        job.events.append("progress", {"step": step, "steps": job.steps,
                                       "fraction": round(step / job.steps, 4)})
        self.queue.bus.publish(ProgressEvent(topic=TOPIC, key=job.id, done=step, total=job.steps))

    def preview(self, image: bytes, mime: str) -> None:
        self.job.preview = image
        url = f"data:{mime};base64,{base64.b64encode(image).decode()}"
        self.job.events.append("preview", {"image": url, "step": self.job.step})
        self.queue.bus.publish(StateEvent(topic=TOPIC, key=self.job.id, state="preview", data={"image": url}))

