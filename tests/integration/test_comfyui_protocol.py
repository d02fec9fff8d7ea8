"""The stub ComfyUI follows the message order recorded from the real ComfyUI 0.3.64, and the
backend gets its images from it every time (issue 12 item 1: 5 of 8 runs lost them)."""

from __future__ import annotations

import asyncio

from sdpanel.generate._comfyui import ComfyUIBackend
from sdpanel.generate._graph import build_graph
from sdpanel.generate._jobs import Job, JobRequest
from tests.fixtures.comfy_protocol import (
    load_recorded,
    message_order,
    record_prompt,
    terminal_order,
)
from tests.fixtures.stub_comfyui import StubComfyUI


class _Quiet:
    def progress(self, step: int, steps: int) -> None:
        pass

    def preview(self, image: bytes, mime: str) -> None:
        pass


def test_stub_ends_a_prompt_in_the_real_servers_order() -> None:
    recorded = load_recorded()
    req = JobRequest(prompt="a cat", checkpoint="model.safetensors", width=64, height=64, steps=2)
    graph = build_graph(req, 1)
    with StubComfyUI(checkpoints=["model.safetensors"]) as stub:
        msgs = asyncio.run(record_prompt(stub.url, graph))
    real_end = terminal_order(recorded["order"])
    # progress_state is ComfyUI's per-node progress summary; the stub leaves it out.
    strip = [n for n in real_end if n != "progress_state"]
    assert terminal_order(message_order(msgs, graph)) == strip
    assert strip[-3:] == ["executed:PreviewImage", "execution_success", "executing:null"]
    # As with the real worker, the history is empty when execution_success arrives.
    at_success = next(m for m in msgs if m["type"] == "execution_success")
    assert at_success["history_outputs"] is False
    assert msgs[-1]["history_outputs"] is True


def test_backend_gets_images_from_every_one_of_many_prompts() -> None:
    async def go() -> list[int]:
        backend = ComfyUIBackend(stub.url)
        counts = []
        try:
            for i in range(8):
                req = JobRequest(prompt=f"run {i}", checkpoint="model.safetensors", width=64, height=64,
                                 steps=2, seed=i)
                counts.append(len(await backend.run(Job(req, seed=i), _Quiet())))
        finally:
            await backend.close()
        return counts

    with StubComfyUI(checkpoints=["model.safetensors"]) as stub:
        assert asyncio.run(go()) == [1] * 8


def test_previews_come_in_the_new_frame_format() -> None:
    """sdpanel sends feature_flags first, so ComfyUI sends previews with metadata (event 4)."""
    frames: list[str] = []

    class Previews(_Quiet):
        def preview(self, image: bytes, mime: str) -> None:
            frames.append(mime)

    async def go() -> None:
        backend = ComfyUIBackend(stub.url)
        try:
            req = JobRequest(prompt="p", checkpoint="model.safetensors", width=64, height=64, steps=3)
            await backend.run(Job(req, seed=1), Previews())
        finally:
            await backend.close()

    with StubComfyUI(checkpoints=["model.safetensors"]) as stub:
        asyncio.run(go())
        assert [f.get("supports_preview_metadata") for f in stub.client_flags.values()] == [True]
    assert frames == ["image/png"] * 3
    assert [m["event"] for m in load_recorded()["messages"] if m["type"] == "<binary>"] == [4, 4]
