"""The job queue with in-memory backends: priorities, fairness, bounds, cancel, failures,
saved outputs and the event stream."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdpanel.generate import (
    BackendError,
    Job,
    JobQueue,
    JobRequest,
    NoBackendError,
    QueueFullError,
    read_text,
)
from sdpanel.generate._backend import Reporter
from sdpanel.generate._png import gradient_png
from sdpanel.runtime import ErrorEvent, Runtime, StateEvent
from sdpanel.storage import StorageRoot


class FakeBackend:
    flavour = "fake"

    def __init__(self, name: str, delay: float = 0.0, fail: str | None = None) -> None:
        self.name, self.url = name, f"fake://{name}"
        self.delay, self.fail = delay, fail
        self.ran: list[str] = []
        self.interrupted = 0
        self.gate: asyncio.Event | None = None  # set by a test to hold a job running
        self._stop = asyncio.Event()

    async def run(self, job: Job, report: Reporter) -> list[bytes]:
        self.ran.append(job.request.prompt)
        self._stop = asyncio.Event()
        for step in range(1, job.request.steps + 1):
            report.progress(step, job.request.steps)
            if self.gate is not None:
                await asyncio.wait([asyncio.ensure_future(self.gate.wait()),
                                    asyncio.ensure_future(self._stop.wait())],
                                   return_when=asyncio.FIRST_COMPLETED)
            if self._stop.is_set():
                return []
            await asyncio.sleep(self.delay)
        if self.fail:
            raise BackendError(self.fail)
        return [gradient_png(job.request.width, job.request.height, job.seed)
                for _ in range(job.request.batch_size * job.request.batch_count)]

    async def interrupt(self) -> None:
        self.interrupted += 1
        self._stop.set()

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        pass


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    rt = Runtime().start()
    yield rt
    rt.stop()


@pytest.fixture
def queue(runtime: Runtime, tmp_path: Path) -> JobQueue:
    return JobQueue(runtime.bus, StorageRoot.at(tmp_path / "store").ensure(), runtime.loop,
                    max_queued=3, cancel_grace=1.0)


def req(prompt: str = "p", **kw: object) -> JobRequest:
    return JobRequest(prompt=prompt, checkpoint="m.safetensors", steps=kw.pop("steps", 2), **kw)  # type: ignore[arg-type]


def wait(job: Job, timeout: float = 5) -> Job:
    return job.future.result(timeout)


def test_no_backend_is_a_clear_refusal(queue: JobQueue) -> None:
    with pytest.raises(NoBackendError, match="No WebUI is running"):
        queue.submit(req())


def test_job_runs_saves_png_with_parameters_and_publishes(queue: JobQueue, runtime: Runtime) -> None:
    seen: list[StateEvent] = []
    runtime.bus.subscribe(lambda e: seen.append(e), topics={"generate"})  # type: ignore[arg-type]
    queue.add_backend(FakeBackend("a"))
    job = wait(queue.submit(req("a cat", seed=-1, batch_count=2, width=64, height=64)))
    assert job.state == "succeeded" and 0 <= job.seed < 2**32
    assert [im.seed for im in job.images] == [job.seed, job.seed + 1]
    path = job.images[0].path
    assert path.parent.parent == queue.storage.outputs_dir and path.suffix == ".png"
    assert f"Seed: {job.seed}," in read_text(path.read_bytes())["parameters"]
    kinds = [e.kind for e in job.events.since(0)]
    assert kinds[:2] == ["queued", "running"] and kinds[-1] == "done" and "progress" in kinds
    ids = [e.id for e in job.events.since(0)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    done = [e for e in seen if getattr(e, "state", "") == "succeeded" and e.key == job.id]
    assert done and done[0].data["paths"] == [str(im.path) for im in job.images]


def test_priorities_then_fifo(queue: JobQueue) -> None:
    backend = FakeBackend("a")
    backend.gate = asyncio.Event()
    queue.add_backend(backend)
    queue.max_queued = 10
    first = queue.submit(req("first"))
    while first.state != "running":
        threading.Event().wait(0.01)
    low, high, mid = (queue.submit(req(p, priority=n)) for p, n in (("low", -1), ("high", 5), ("mid", 0)))
    queue.loop.call_soon_threadsafe(backend.gate.set)
    for job in (first, low, high, mid):
        wait(job)
    assert backend.ran == ["first", "high", "mid", "low"]


def test_queue_full_is_refused_with_the_limit(queue: JobQueue) -> None:
    backend = FakeBackend("a")
    backend.gate = asyncio.Event()
    queue.add_backend(backend)
    running = queue.submit(req("running"))
    deadline = threading.Event()
    while running.state != "running" and not deadline.wait(0.01):
        pass
    waiting = [queue.submit(req(f"w{i}")) for i in range(3)]
    with pytest.raises(QueueFullError, match="full .*3 jobs waiting.*limit is 3"):
        queue.submit(req("one too many"))
    queue.cancel(waiting[0].id)
    queue.submit(req("fits again"))  # a cancelled job frees its place
    queue.loop.call_soon_threadsafe(backend.gate.set)


def test_cancel_queued_and_running(queue: JobQueue) -> None:
    backend = FakeBackend("a")
    backend.gate = asyncio.Event()  # never set: the job runs until interrupted
    queue.add_backend(backend)
    running = queue.submit(req("r", steps=5))
    queued = queue.submit(req("q"))
    assert queue.cancel(queued.id).state == "cancelled"
    assert queued.events.since(0)[-1].kind == "error"
    while running.state != "running":
        threading.Event().wait(0.01)
    queue.cancel(running.id)
    assert wait(running).state == "cancelled" and backend.interrupted == 1
    assert running.events.since(0)[-1].data == {"state": "cancelled", "message": "cancelled while running"}
    assert backend.ran == ["r"]  # the queued one never reached the backend


def test_failure_is_reported_and_the_queue_goes_on(queue: JobQueue) -> None:
    backend = FakeBackend("a", fail="CUDA out of memory")
    queue.add_backend(backend)
    errors: list = []
    queue.bus.subscribe(errors.append, topics={"generate"})
    bad = wait(queue.submit(req("bad")))
    assert bad.state == "failed" and bad.error == "CUDA out of memory"
    assert any(isinstance(e, ErrorEvent) and e.key == bad.id and e.message == "CUDA out of memory"
               for e in errors)
    backend.fail = None
    assert wait(queue.submit(req("good"))).state == "succeeded"


def test_two_backends_share_the_work(queue: JobQueue) -> None:
    queue.max_queued = 20
    a, b = FakeBackend("a", delay=0.02), FakeBackend("b", delay=0.02)
    queue.add_backend(a)
    queue.add_backend(b)
    jobs = [queue.submit(req(f"j{i}")) for i in range(8)]
    for job in jobs:
        wait(job)
    assert len(a.ran) + len(b.ran) == 8
    assert abs(len(a.ran) - len(b.ran)) <= 2
    assert {j.backend for j in jobs} == {"a", "b"}
