"""The built-in engine's worker process: ``python -m sdpanel.generate.engine.worker``.

Reads requests from stdin, runs one job at a time on a job thread (the model stays loaded
between jobs), writes events to a private copy of stdout (fd 1 is pointed at stderr so a
library's stray ``print`` cannot corrupt the protocol). A cancel sets a flag the step
callback checks, so a cancelled job stops at the end of the step it is in.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, BinaryIO

from ._checkpoint import CheckpointError
from ._protocol import b64, decode, encode, unb64


class Channel:
    def __init__(self, out: BinaryIO) -> None:
        self._out, self._lock = out, threading.Lock()

    def send(self, **message: Any) -> None:
        with self._lock:
            self._out.write(encode(message))
            self._out.flush()


def _private_stdout() -> BinaryIO:
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "wb", buffering=0)


class _State:
    """The running job's id and step, and the cancels received (from the stdin thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.job_id = ""
        self.step = 0
        self.cancelled: dict[str, int] = {}  # job id → the step it was on when cancelled

    def cancel(self, job_id: str) -> None:
        with self.lock:
            self.cancelled.setdefault(job_id, self.step if job_id == self.job_id else 0)

    def is_cancelled(self, job_id: str) -> bool:
        with self.lock:
            return job_id in self.cancelled


def _run_job(engine: Any, channel: Channel, state: _State, msg: dict[str, Any]) -> None:
    from ._pipelines import Cancelled, JobFailed, png

    job_id = str(msg["id"])
    with state.lock:
        state.job_id, state.step = job_id, 0

    def on_step(done: int, total: int, preview: Any) -> None:
        with state.lock:
            state.step = done
        channel.send(ev="progress", id=job_id, step=done, steps=total)
        if preview is not None:
            channel.send(ev="preview", id=job_id, png=b64(png(preview)))

    try:
        images = engine.run(msg["request"], unb64(msg.get("init_image")), unb64(msg.get("mask")),
                            on_step, lambda: state.is_cancelled(job_id))
        plan = engine.loaded.plan.describe() if engine.loaded else ""
        channel.send(ev="done", id=job_id, images=[b64(i) for i in images], plan=plan)
    except Cancelled:
        with state.lock:
            seen = state.cancelled.get(job_id, 0)
        # step: where it stopped; cancel_step: where it was when the cancel came in.
        channel.send(ev="cancelled", id=job_id, step=state.step, cancel_step=seen)
    except (CheckpointError, JobFailed, ValueError) as exc:
        channel.send(ev="error", id=job_id, message=str(exc))
    except Exception as exc:  # a bug or a library failure: report it, keep serving
        traceback.print_exc()
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        channel.send(ev="error", id=job_id, message=f"the built-in engine failed: "
                     f"{type(exc).__name__}: {first}")
    finally:
        with state.lock:
            state.cancelled.pop(job_id, None)
            state.job_id = ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sdpanel.generate.engine.worker")
    parser.add_argument("--cache", type=Path, required=True, help="folder for the offline layouts")
    args = parser.parse_args(argv)
    channel = Channel(_private_stdout())
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="engine: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never ask a hub, whatever a library wants
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    try:
        import diffusers
        import torch

        from ._pipelines import Engine, pick_device
    except ImportError as exc:  # the engine_python setting names a Python without them
        channel.send(ev="fatal", message=f"{sys.executable} cannot run the built-in engine "
                     f"(no module {exc.name!r}): pip install 'sdpanel[engine]' into it.")
        return 2

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()  # the log is for people, not tqdm frames
    engine = Engine(args.cache)
    jobs: queue.Queue[dict[str, Any] | None] = queue.Queue()
    state = _State()
    channel.send(ev="ready", device=pick_device()[0], pid=os.getpid(),
                 versions={"torch": torch.__version__, "diffusers": diffusers.__version__})

    def work() -> None:
        while (msg := jobs.get()) is not None:
            if msg.get("op") == "unload":
                channel.send(ev="unloaded", freed=engine.unload())
            else:
                _run_job(engine, channel, state, msg)

    thread = threading.Thread(target=work, name="engine-job", daemon=True)
    thread.start()
    for line in sys.stdin.buffer:
        msg = decode(line)
        if msg is None:
            continue
        op = msg.get("op")
        if op == "run":
            jobs.put(msg)
        elif op == "cancel":
            state.cancel(str(msg.get("id")))
        elif op == "unload":
            jobs.put({"op": "unload", "id": ""})
        elif op == "shutdown":
            break
    jobs.put(None)
    thread.join(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
