"""One asyncio loop per process, on its own daemon thread.

Why not the kernel's loop: on ipykernel 7 tasks created on the kernel loop stall between
cells, and a blocking cell would starve them. Front ends hand coroutines to this loop with
:meth:`Runtime.submit` and get a :class:`Handle` back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

from ._events import ErrorEvent, EventBus

T = TypeVar("T")


class Handle(Generic[T]):
    """The result of :meth:`Runtime.submit`: await it (from any loop), ``wait()`` for it
    (blocking, for headless cells and the CLI) or ``cancel()`` it."""

    def __init__(self, future: concurrent.futures.Future[T], name: str) -> None:
        self._future = future
        self.name = name

    def wait(self, timeout: float | None = None) -> T:
        """Block until done; re-raises the task's exception here."""
        return self._future.result(timeout)

    def cancel(self) -> bool:
        return self._future.cancel()

    def done(self) -> bool:
        return self._future.done()

    def cancelled(self) -> bool:
        return self._future.cancelled()

    def exception(self) -> BaseException | None:
        if not self._future.done() or self._future.cancelled():
            return None
        return self._future.exception()

    def add_done_callback(self, fn: Any) -> None:
        self._future.add_done_callback(lambda _f: fn(self))

    def __await__(self) -> Generator[Any, None, T]:
        return asyncio.wrap_future(self._future).__await__()


class Runtime:
    """Owns the loop thread and the event bus. Start/stop are idempotent."""

    def __init__(self) -> None:
        self.bus = EventBus()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._services: dict[str, Any] = {}

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        self.start()
        assert self._loop is not None
        return self._loop

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Runtime:
        with self._lock:
            if self.running:
                return self
            ready = threading.Event()
            loop = asyncio.new_event_loop()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()
                # Cancel what is left so nothing leaks "Task was destroyed" warnings.
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()

            self._loop = loop
            self._thread = threading.Thread(target=run, name="sdpanel-runtime", daemon=True)
            self._thread.start()
            ready.wait()
            return self

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            if not self.running or self._loop is None:
                return
            loop, thread = self._loop, self._thread
            loop.call_soon_threadsafe(loop.stop)
            assert thread is not None
            # Called from a task or callback on the loop itself: a thread cannot join
            # itself; the loop stops once the current callback returns.
            if thread is not threading.current_thread():
                thread.join(timeout)
            self._loop = None
            self._thread = None
            self._services.clear()

    def submit(self, coro: Coroutine[Any, Any, T], *, name: str = "", topic: str = "runtime") -> Handle[T]:
        """Run ``coro`` on the runtime loop. If it raises, an :class:`ErrorEvent` is
        published and the exception is re-raised wherever the handle is waited on."""
        label = name or getattr(coro, "__qualname__", "task")

        async def guarded() -> T:
            try:
                return await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.bus.publish(ErrorEvent(topic=topic, key=label, message=str(exc) or type(exc).__name__,
                                            error_type=type(exc).__name__))
                raise

        future = asyncio.run_coroutine_threadsafe(guarded(), self.loop)
        return Handle(future, label)

    def call_soon(self, fn: Any, *args: Any) -> None:
        """Run a plain callable on the loop thread (for example to touch loop-owned state)."""
        self.loop.call_soon_threadsafe(fn, *args)

    def service(self, name: str, factory: Any) -> Any:
        """Get or lazily create a named service object owned by this runtime."""
        with self._lock:
            if name not in self._services:
                self._services[name] = factory()
            return self._services[name]


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The one runtime of this process, started on first use."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime()
    return _runtime.start()
