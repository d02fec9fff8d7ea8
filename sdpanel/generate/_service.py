"""The generation service of a process: one :class:`JobQueue` per storage root on the
runtime's loop, fed with backends found among the running WebUIs or given explicitly."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdpanel.runtime import Runtime, get_runtime
from sdpanel.storage import StorageRoot

from ._a1111 import A1111Backend
from ._backend import Backend
from ._builtin import FLAVOUR as BUILTIN
from ._builtin import INSTALL_HINT, BuiltinBackend, EngineUnavailable, engine_python
from ._comfyui import ComfyUIBackend
from ._jobs import Job, JobRequest
from ._queue import TOPIC, JobQueue, NoBackendError
from ._validate import validate_request

FLAVOURS = ("comfyui", "a1111", BUILTIN)
BACKENDS_ENV = "SDPANEL_GENERATE_BACKENDS"  # "comfyui=http://host:8188,a1111=http://..."


def make_backend(url: str, flavour: str, name: str | None = None) -> Backend:
    if flavour == "comfyui":
        return ComfyUIBackend(url, name)
    if flavour in ("a1111", "forge"):
        return A1111Backend(url, name)
    raise ValueError(f"unknown backend flavour {flavour!r}: use comfyui or a1111 (A1111, Forge, "
                     "ReForge, SD.Next all speak the a1111 API)")


def flavour_of(webui: str) -> str:
    return "comfyui" if webui.lower().startswith("comfy") else "a1111"


def discover_backends(storage: StorageRoot) -> list[Backend]:
    """Backends for the WebUIs recorded in ``<storage>/.sdpanel/pids/webui-*.json`` whose
    process is still alive (the process manager's records; a reused pid does not count)."""
    from sdpanel.webuis import read_records  # late: the process manager imports a lot

    found: list[Backend] = []
    for rec in read_records(storage):
        try:
            port = int(rec["port"])
        except (KeyError, TypeError, ValueError):
            continue
        if not rec.get("alive"):
            continue
        name = str(rec.get("name") or "webui")
        flavour = str(rec.get("flavour") or flavour_of(name))
        found.append(make_backend(f"http://127.0.0.1:{port}", flavour, f"{name}:{port}"))
    return found


def configured_backends(environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """``(flavour, url)`` for each WebUI named in ``SDPANEL_GENERATE_BACKENDS`` (WebUIs
    sdpanel did not start); a missing flavour means ComfyUI."""
    raw = (os.environ if environ is None else environ).get(BACKENDS_ENV) or ""
    pairs = []
    for item in filter(None, raw.split(",")):
        flavour, _, url = item.partition("=")
        if url.strip():
            pairs.append((flavour.strip() or "comfyui", url.strip()))
    return pairs


class GenerateService:
    def __init__(self, storage: StorageRoot, runtime: Runtime | None = None, max_queued: int = 64,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.runtime = runtime or get_runtime()
        self.storage = storage
        self.queue = JobQueue(self.runtime.bus, storage, loop or self.runtime.loop, max_queued=max_queued)
        self._discovered: set[str] = set()
        self._auto_builtin = False  # added because no WebUI ran: dropped when one starts

    def refresh_backends(self) -> list[Backend]:
        """Follow the running WebUIs: add ones started since the last look, drop the ones
        that stopped (explicitly configured backends stay). A WebUI that started makes
        the built-in engine give its memory back (it may share the GPU)."""
        found = {b.name: b for b in discover_backends(self.storage)}
        known = {b.name for b in self.queue.backends}
        for name, backend in found.items():
            if name not in known:
                self.queue.add_backend(backend)
        if set(found) - self._discovered:
            self._free_builtin(next(iter(set(found) - self._discovered)))
        for name in self._discovered - set(found):
            self.queue.remove_backend(name)
        self._discovered = set(found)
        return self.queue.backends

    def follow_backends(self) -> list[Backend]:
        """The configured backends (``SDPANEL_GENERATE_BACKENDS``; a URL already served is
        not added twice) and the running WebUIs (:meth:`refresh_backends`). The panel and
        the REST API call this before showing backends or queueing."""
        for flavour, url in configured_backends():
            if not any(b.url == url.rstrip("/") for b in self.queue.backends):
                self.queue.add_backend(make_backend(url, flavour))
        return self.refresh_backends()

    def use_backend(self, url: str, flavour: str) -> Backend:
        """An explicitly configured backend (a WebUI sdpanel did not start)."""
        backend = make_backend(url, flavour)
        for existing in self.queue.backends:
            if existing.name == backend.name:
                return existing
        self.queue.add_backend(backend)
        return backend

    def builtin(self) -> BuiltinBackend | None:
        return next((b for b in self.queue.backends if isinstance(b, BuiltinBackend)), None)

    def use_builtin(self, python: str | None = None) -> BuiltinBackend:
        """The built-in engine (a worker process with diffusers) as a backend. Raises
        :class:`EngineUnavailable` (one sentence with the fix) without torch + diffusers."""
        existing = self.builtin()
        if existing is not None:
            self._auto_builtin = False
            return existing
        if python is None:
            from sdpanel.settings import load_settings

            python = load_settings().engine_python
        backend = BuiltinBackend(self.storage, engine_python(python or ""))
        self.queue.add_backend(backend)
        return backend

    def _free_builtin(self, webui: str) -> None:
        backend = self.builtin()
        if backend is None:
            return
        from sdpanel.runtime import StateEvent

        if self._auto_builtin:  # only there because no WebUI ran: the WebUI takes over
            self._auto_builtin = False
            self.queue.remove_backend(backend.name)
            message = f"{webui} started: the built-in engine stopped and freed its memory."
        else:
            asyncio.run_coroutine_threadsafe(backend.unload(), self.queue.loop)
            message = (f"{webui} started: the built-in engine unloaded its model to free GPU "
                       "memory (the next built-in job loads it again).")
        self.runtime.bus.publish(StateEvent(topic=TOPIC, key=backend.name, state="unloaded",
                                            data={"message": message}))

    def validate(self, data: Mapping[str, Any]) -> JobRequest:
        return validate_request(data, self.storage)

    def submit(self, data: Mapping[str, Any] | JobRequest) -> Job:
        """Validate (raises ValidationError with every bad field) and queue."""
        request = data if isinstance(data, JobRequest) else self.validate(data)
        if not self.queue.backends:
            self.refresh_backends()
        if not self.queue.backends:
            # No WebUI: the built-in engine, when this Python (or engine_python) can run it.
            try:
                self.use_builtin()
                self._auto_builtin = True
            except EngineUnavailable as exc:
                raise NoBackendError(
                    f"No WebUI is running and the built-in engine cannot run because {exc.reason}: "
                    "launch a WebUI (the Launch cell or `sdpanel launch <webui>`), or "
                    f"{INSTALL_HINT}.") from None
        return self.queue.submit(request)


def default_storage() -> StorageRoot:
    from sdpanel.settings import load_settings

    settings = load_settings()
    if settings.storage:
        return StorageRoot.at(settings.storage)
    from sdpanel.platforms import detect_platform

    return StorageRoot.at(detect_platform().storage_root)


def get_service(storage: str | os.PathLike[str] | StorageRoot | None = None) -> GenerateService:
    """The process's service for ``storage`` (default: the configured store)."""
    root = storage if isinstance(storage, StorageRoot) else (
        StorageRoot.at(storage) if storage is not None else default_storage())
    rt = get_runtime()
    loop = rt.loop  # read before service(): the factory runs under the runtime's lock
    return rt.service(f"generate:{root.path}", lambda: GenerateService(root, rt, loop=loop))


def read_image_arg(value: Any) -> Any:
    """Python / CLI convenience: a Path (or a str naming an existing file) → its bytes."""
    if isinstance(value, Path):
        return value.read_bytes()
    if isinstance(value, str) and not value.startswith("data:") and len(value) < 4096:
        path = Path(value).expanduser()
        if path.is_file():
            return path.read_bytes()
    return value
