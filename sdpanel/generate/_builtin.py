"""The "builtin" backend: generation with no WebUI, by the diffusers engine running in its
own worker process (``sdpanel.generate.engine.worker``). A crash or an out-of-memory kills
the worker, not the kernel; the next job starts a new one. This module never imports
torch: it only finds a Python that has it and talks to the worker over pipes."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from sdpanel.settings import SECRET_NAMES, redact
from sdpanel.storage import StorageRoot

from ._backend import Reporter
from ._jobs import BackendError, Job, JobCancelled
from .engine._checkpoint import CheckpointError, model_family
from .engine._protocol import LINE_LIMIT, b64, decode, encode, unb64

log = logging.getLogger("sdpanel.generate.builtin")
FLAVOUR = "builtin"
INSTALL_HINT = ("pip install 'sdpanel[engine]' (torch, diffusers, transformers, safetensors) "
                "into this Python, or set engine_python to a Python that has them")
_job_ids = itertools.count(1)


class EngineUnavailable(RuntimeError):
    """No Python with torch + diffusers to run the worker. ``reason`` is the why alone
    (for sentences that add their own fix); the message is a whole sentence."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"The built-in engine cannot run because {reason}: {INSTALL_HINT}.")


def has_engine_packages() -> bool:
    """True when this interpreter could run the worker (checked without importing torch)."""
    return all(importlib.util.find_spec(m) is not None
               for m in ("torch", "diffusers", "transformers", "safetensors"))


def engine_python(configured: str = "") -> str:
    """The Python that runs the worker: the ``engine_python`` setting, else this one when
    it has the packages. Raises :class:`EngineUnavailable` with the fix."""
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise EngineUnavailable(f"engine_python {configured!r} is not an executable file")
        return str(path)
    if has_engine_packages():
        return sys.executable
    raise EngineUnavailable(f"this Python ({sys.executable}) has no torch / diffusers")


def builtin_status() -> dict[str, Any]:
    """For forms: can the built-in engine run here, and if not the sentence saying how."""
    from sdpanel.settings import load_settings

    try:
        return {"available": True, "python": engine_python(load_settings().engine_python), "message": ""}
    except EngineUnavailable as exc:
        return {"available": False, "python": "", "message": str(exc)}


def worker_env() -> dict[str, str]:
    """The worker's environment: ours minus every secret (it needs none), offline hubs."""
    secret = {n for n in SECRET_NAMES} | {f"RUNPOD_SECRET_{n}" for n in SECRET_NAMES}
    env = {k: v for k, v in os.environ.items() if k not in secret}
    # The worker must import this sdpanel (a checkout or the installed package).
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_HUB_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1")
    return env


class BuiltinBackend:
    flavour = FLAVOUR
    # A cancel lands at the end of the current step, which on a CPU can take a minute:
    # the queue waits that long for the worker's answer before giving up on it.
    cancel_grace = 180.0

    def __init__(self, storage: StorageRoot, python: str | None = None, name: str = "builtin") -> None:
        self.storage = storage
        self.python = python or engine_python()
        self.name = name
        self.url = "builtin://local"
        self.device = ""
        self.plan = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._job_id: str | None = None
        self._stderr_tail: list[str] = []
        self._stderr_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.restarts = 0
        self.last_cancel: tuple[int, int] = (0, 0)

    # ---- the worker ----------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    async def _start(self) -> asyncio.subprocess.Process:
        if self._proc is not None and self._proc.returncode is None:
            return self._proc
        if self._proc is not None:
            self.restarts += 1
        cache = self.storage.path / ".sdpanel" / "engine"
        cache.mkdir(parents=True, exist_ok=True)
        self._stderr_tail = []
        proc = await asyncio.create_subprocess_exec(
            self.python, "-m", "sdpanel.generate.engine.worker", "--cache", str(cache),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=worker_env(), limit=LINE_LIMIT,
            start_new_session=True)
        self._proc = proc
        self._stderr_task = asyncio.get_running_loop().create_task(self._read_stderr(proc))
        ready = await self._next(proc)
        if ready is not None and ready.get("ev") == "fatal":
            await proc.wait()
            raise BackendError(str(ready.get("message")))
        if ready is None or ready.get("ev") != "ready":
            await self._reap(proc, grace=0)
            raise self._died(proc, "while starting")
        self.device = str(ready.get("device") or "")
        log.info("built-in engine worker %s started on %s", proc.pid, self.device)
        return proc

    async def _read_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        log_path = self.storage.path / ".sdpanel" / "logs" / "engine.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as f:
            async for line in proc.stderr:
                f.write(line)
                f.flush()
                self._stderr_tail = [*self._stderr_tail[-39:], redact(line.decode(errors="replace").rstrip())]

    async def _next(self, proc: asyncio.subprocess.Process) -> dict[str, Any] | None:
        """The next event, None when the worker's stdout closed (it died)."""
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                return None
            msg = decode(line)
            if msg is not None:
                return msg

    def _died(self, proc: asyncio.subprocess.Process, when: str) -> BackendError:
        code = proc.returncode
        how = (f"was killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
               and -code in signal.valid_signals() else f"exited with code {code}")
        hint = " (probably out of memory)" if code == -signal.SIGKILL else ""
        last = next((ln for ln in reversed(self._stderr_tail) if ln.strip()), "")
        err = BackendError(f"The built-in engine's worker {how}{hint} {when}"
                           + (f" (last output: {last[:200]})" if last else "")
                           + "; the next job starts a new one (log: .sdpanel/logs/engine.log).")
        err.connection_lost = True  # type: ignore[attr-defined]
        return err

    async def _send(self, proc: asyncio.subprocess.Process, message: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write(encode(message))
        await proc.stdin.drain()

    # ---- Backend protocol ----------------------------------------------------------
    def _resolve(self, job: Job) -> dict[str, Any]:
        req = job.request
        ckpt = self.storage.kind_dir("checkpoints") / req.checkpoint
        try:
            model_family(ckpt)  # header check here: a bad file fails before a worker starts
        except CheckpointError as exc:
            raise BackendError(str(exc)) from None
        data = req.public()
        data.pop("init_image"), data.pop("mask")
        data["checkpoint"] = str(ckpt)
        data["vae"] = str(self.storage.kind_dir("vae") / req.vae) if req.vae else ""
        data["loras"] = [{"path": str(self.storage.kind_dir("loras") / lo.name), "weight": lo.weight}
                         for lo in req.loras]
        return data

    async def run(self, job: Job, report: Reporter) -> list[bytes]:
        request = self._resolve(job)
        async with self._lock:
            try:
                proc = await self._start()
            except OSError as exc:
                raise BackendError(f"The built-in engine could not start {self.python} "
                                   f"({exc.strerror or exc}): {INSTALL_HINT}.") from None
            job_id = f"{job.id}-{next(_job_ids)}"
            outputs: list[bytes] = []
            try:
                # One worker job per batch of the count, each with the next seed (what the
                # queue writes into each PNG), so progress and cancel work per batch too.
                for n in range(job.request.batch_count):
                    request_n = {**request, "seed": job.seed + n, "batch_count": 1}
                    outputs += await self._one(proc, job, f"{job_id}-{n}", request_n, report, n)
                return outputs
            finally:
                self._job_id = None

    async def _one(self, proc: asyncio.subprocess.Process, job: Job, job_id: str,
                   request: dict[str, Any], report: Reporter, n: int) -> list[bytes]:
        if job.cancel_requested.is_set():
            raise JobCancelled()
        self._job_id = job_id
        req = job.request
        await self._send(proc, {"op": "run", "id": job_id, "request": request,
                                "init_image": b64(req.init_image), "mask": b64(req.mask)})
        count = req.batch_count
        while True:
            msg = await self._next(proc)
            if msg is None:
                await proc.wait()
                raise self._died(proc, f"during job {job.id}")
            if msg.get("id") != job_id:
                continue  # a late event of a job given up on
            ev = msg.get("ev")
            if ev == "progress":
                steps = int(msg["steps"])
                report.progress(n * steps + int(msg["step"]), steps * count)
            elif ev == "preview" and msg.get("png"):
                report.preview(unb64(msg["png"]) or b"", "image/png")
            elif ev == "done":
                self.plan = str(msg.get("plan") or "")
                return [unb64(i) or b"" for i in msg.get("images") or []]
            elif ev == "cancelled":
                # (step it stopped at, step it was on when the cancel arrived)
                self.last_cancel = (int(msg.get("step") or 0), int(msg.get("cancel_step") or 0))
                raise JobCancelled()
            elif ev == "error":
                raise BackendError(str(msg.get("message") or "the built-in engine failed"))

    async def interrupt(self) -> None:
        proc, job_id = self._proc, self._job_id
        if proc is not None and proc.returncode is None and job_id:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send(proc, {"op": "cancel", "id": job_id})

    async def unload(self) -> bool:
        """Free the model's memory (a WebUI is starting on the same GPU); the next job
        loads it again. True when a worker was running."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return False
        # Stopping the worker frees all of its GPU memory, which an in-process unload
        # cannot promise (the CUDA context alone keeps hundreds of MB).
        await self.close()
        return True

    async def ping(self) -> bool:
        return True  # no server to be down: a dead worker is restarted by the next job

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._send(proc, {"op": "shutdown"})
        await self._reap(proc, grace=10)

    async def _reap(self, proc: asyncio.subprocess.Process, grace: float) -> None:
        """Wait ``grace`` seconds for the worker to exit, then kill it; drain its log."""
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._stderr_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._stderr_task, 2)
