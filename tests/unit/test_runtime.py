"""The runtime: its own loop thread, handles, error events, the bus and the publisher."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sdpanel.runtime import (
    ErrorEvent,
    Event,
    EventBus,
    LogEvent,
    ProgressEvent,
    Publisher,
    Runtime,
    StateEvent,
    get_runtime,
)


@pytest.fixture
def rt() -> Iterator[Runtime]:
    runtime = Runtime().start()
    yield runtime
    runtime.stop()


def _collect(bus: EventBus, topics: set[str] | None = None) -> list[Event]:
    seen: list[Event] = []
    bus.subscribe(seen.append, topics)
    return seen


# ---- runtime --------------------------------------------------------------------------


def test_submit_runs_on_the_runtime_thread_and_wait_returns(rt: Runtime) -> None:
    async def where() -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    handle = rt.submit(where(), name="where")
    assert handle.wait(5) == "sdpanel-runtime"
    assert handle.done() and not handle.cancelled() and handle.exception() is None
    assert handle.name == "where"


async def test_handle_can_be_awaited_from_another_loop(rt: Runtime) -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0.01)
        return 2 * x

    caller_loop = asyncio.get_running_loop()
    assert caller_loop is not rt.loop
    assert await rt.submit(double(21)) == 42
    results = await asyncio.gather(*(rt.submit(double(i)) for i in range(5)))
    assert results == [0, 2, 4, 6, 8]


def test_blocking_cell_does_not_starve_the_runtime(rt: Runtime) -> None:
    # A headless cell blocks its thread in wait(); work on the runtime loop still advances.
    ticks: list[int] = []

    async def ticker() -> int:
        for i in range(5):
            ticks.append(i)
            await asyncio.sleep(0.01)
        return len(ticks)

    assert rt.submit(ticker()).wait(5) == 5


def test_cancel_stops_the_coroutine(rt: Runtime) -> None:
    started, cleaned_up = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned_up.set()

    handle = rt.submit(forever(), name="forever")
    assert started.wait(5)
    assert handle.cancel() is True
    with pytest.raises(concurrent.futures.CancelledError):
        handle.wait(5)
    assert handle.cancelled()
    assert cleaned_up.wait(5), "the task's finally block never ran: the task kept running"


def test_errors_are_published_and_raised_at_wait(rt: Runtime) -> None:
    events = _collect(rt.bus)

    async def broken() -> None:
        await asyncio.sleep(0)
        raise FileNotFoundError("model.safetensors is missing")

    handle = rt.submit(broken(), name="dl-42", topic="downloads")
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        handle.wait(5)
    assert isinstance(handle.exception(), FileNotFoundError)
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert len(errors) == 1
    err = errors[0]
    assert (err.topic, err.key, err.error_type) == ("downloads", "dl-42", "FileNotFoundError")
    assert err.message == "model.safetensors is missing"
    assert err.kind == "error"


async def test_errors_are_raised_at_await_too(rt: Runtime) -> None:
    async def broken() -> None:
        raise ValueError("bad link")

    with pytest.raises(ValueError, match="bad link"):
        await rt.submit(broken())


def test_error_messages_are_redacted(rt: Runtime, planted_tokens: dict[str, str]) -> None:
    events = _collect(rt.bus, {"downloads"})

    async def leaky() -> None:
        raise RuntimeError(f"GET https://civitai.com/api?token={planted_tokens['CIVITAI_TOKEN']} 401")

    with pytest.raises(RuntimeError):
        rt.submit(leaky(), topic="downloads").wait(5)
    assert len(events) == 1
    assert planted_tokens["CIVITAI_TOKEN"] not in events[0].message
    assert "token=***" in events[0].message


def test_cancellation_is_not_an_error_event(rt: Runtime) -> None:
    events = _collect(rt.bus)
    handle = rt.submit(asyncio.sleep(3600))
    time.sleep(0.05)
    handle.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        handle.wait(5)
    assert not [e for e in events if isinstance(e, ErrorEvent)]


def test_start_and_stop_are_idempotent() -> None:
    runtime = Runtime()
    runtime.start()
    thread = runtime._thread
    loop = runtime.loop
    assert runtime.start() is runtime
    assert runtime._thread is thread and runtime.loop is loop  # no second thread
    runtime.stop()
    runtime.stop()  # second stop: no error
    assert not runtime.running
    assert thread is not None and not thread.is_alive()
    runtime.start()  # restart after stop works
    assert runtime.submit(asyncio.sleep(0, result="again")).wait(5) == "again"
    runtime.stop()


def test_stop_cancels_pending_tasks_and_releases_waiters() -> None:
    runtime = Runtime().start()
    handle = runtime.submit(asyncio.sleep(3600))
    time.sleep(0.05)
    runtime.stop()
    with pytest.raises(concurrent.futures.CancelledError):
        handle.wait(5)


def test_stop_from_a_task_on_the_loop_itself() -> None:
    runtime = Runtime().start()
    thread = runtime._thread

    async def shut_down() -> str:
        runtime.stop()  # a thread cannot join itself: this must not raise
        return "stopping"

    assert runtime.submit(shut_down()).wait(5) == "stopping"
    assert thread is not None
    thread.join(5)
    assert not runtime.running
    assert runtime.start().submit(asyncio.sleep(0, result=1)).wait(5) == 1
    runtime.stop()


def test_get_runtime_is_one_per_process() -> None:
    first = get_runtime()
    assert get_runtime() is first
    assert first.running


def test_service_is_created_once(rt: Runtime) -> None:
    made: list[int] = []
    a = rt.service("queue", lambda: made.append(1) or object())
    b = rt.service("queue", lambda: made.append(1) or object())
    assert a is b and made == [1]


# ---- bus ----------------------------------------------------------------------------------


def test_bus_topic_filtering_and_unsubscribe() -> None:
    bus = EventBus()
    everything = _collect(bus)
    downloads = _collect(bus, {"downloads"})
    webuis: list[Event] = []
    unsubscribe = bus.subscribe(webuis.append, {"webui"})

    bus.publish(ProgressEvent(topic="downloads", key="a", done=5, total=10))
    bus.publish(StateEvent(topic="webui:comfyui", state="running", data={"port": 8188}))
    bus.publish(LogEvent(topic="webuis", message="not a prefix match"))
    assert [e.topic for e in everything] == ["downloads", "webui:comfyui", "webuis"]
    assert [e.key for e in downloads] == ["a"]
    assert [e.topic for e in webuis] == ["webui:comfyui"]  # "webui" matches "webui:<name>"

    unsubscribe()
    unsubscribe()  # twice is harmless
    bus.publish(StateEvent(topic="webui:forge", state="stopped"))
    assert len(webuis) == 1
    assert len(everything) == 4


def test_broken_subscriber_does_not_stop_others() -> None:
    bus = EventBus()

    def broken(_e: Event) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(broken)
    seen = _collect(bus)
    bus.publish(LogEvent(topic="x", message="hello"))
    assert [e.message for e in seen] == ["hello"]  # type: ignore[attr-defined]


def test_bus_redacts_log_messages(planted_tokens: dict[str, str]) -> None:
    bus = EventBus()
    seen = _collect(bus)
    bus.publish(LogEvent(topic="x", message=f"aria2c --header=Authorization: Bearer {planted_tokens['HF_TOKEN']}"))
    bus.publish(ProgressEvent(topic="x", message=f"{planted_tokens['CIVITAI_TOKEN']} 50%"))
    assert seen[0].message.endswith("Bearer ***")  # type: ignore[attr-defined]
    assert seen[1].message == "*** 50%"  # type: ignore[attr-defined]


def test_events_are_ordered_and_typed() -> None:
    a = LogEvent(topic="t", message="1")
    b = StateEvent(topic="t", state="done")
    assert b.seq > a.seq
    assert (a.kind, b.kind) == ("log", "state")
    with pytest.raises(AttributeError):
        a.message = "changed"  # type: ignore[misc]  # frozen: safe to share across threads


# ---- publisher ------------------------------------------------------------------------


class FakeWidget:
    """Records every trait write, whether it happened inside hold_sync, and flush times."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, Any, bool]] = []
        self.batches: list[float] = []
        self._holding = False
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold_sync(self) -> Iterator[None]:
        with self._lock:
            self.batches.append(time.monotonic())
            self._holding = True
            try:
                yield
            finally:
                self._holding = False

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or name in ("writes", "batches"):
            object.__setattr__(self, name, value)
        else:
            self.writes.append((name, value, self._holding))
            object.__setattr__(self, name, value)


def test_publisher_rate_limit_and_coalescing() -> None:
    widget = FakeWidget()
    pub = Publisher(widget, max_rate=10)
    start = time.monotonic()

    def writer(offset: int) -> None:
        for i in range(500):
            pub.update(progress=offset + i, **{f"speed{offset}": i})
            time.sleep(0.001)

    threads = [threading.Thread(target=writer, args=(o,)) for o in (0, 1000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    pub.close()

    flushes = len(widget.batches)
    assert flushes == pub.flushes
    assert 2 <= flushes <= elapsed * 10 + 2, (flushes, elapsed)
    # No one-second window holds more than 10 flushes (+1 for thread-scheduling jitter:
    # the time is taken when the batch opens, slightly after the publisher's own clock).
    times = widget.batches
    busiest = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert busiest <= 11, times
    gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
    assert gaps[len(gaps) // 2] >= 0.09, gaps  # the typical gap is the 1/max_rate interval
    assert len(widget.writes) < 1000 / 5  # 1000 updates coalesced into few writes
    assert all(inside for _n, _v, inside in widget.writes)  # every write inside hold_sync
    assert widget.speed0 == 499 and widget.speed1000 == 499  # latest values win
    assert widget.progress in (499, 1499)


def test_publisher_delivers_a_lone_update_promptly() -> None:
    widget = FakeWidget()
    pub = Publisher(widget, max_rate=10)
    pub.update(status="running")
    deadline = time.monotonic() + 2
    while not widget.writes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert widget.writes == [("status", "running", True)]
    pub.close()
    assert pub.flushes == 1  # close() with nothing pending sends nothing
