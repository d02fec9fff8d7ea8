"""The jobs REST + SSE API of a real jupyter-server (pytest-jupyter, token auth on) in
front of the real ComfyUI the session launched: the server finds it through the pid record
`sdpanel launch` wrote, as it does for a user."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403

from sdpanel.generate import read_text
from sdpanel.generate._png import image_info
from tests.fixtures.comfy_live import CKPT, LORA, Comfy


@pytest.fixture
def storage(comfy: Comfy, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SDPANEL_STORAGE", str(comfy.store))
    monkeypatch.setenv("SDPANEL_PLATFORM", "local")
    return comfy.store


@pytest.fixture
def jp_server_config(storage: Path) -> dict[str, object]:
    return {"ServerApp": {"jpserver_extensions": {"sdpanel.server": True}}}


@pytest.fixture
def run(jp_asyncio_loop: asyncio.AbstractEventLoop) -> Callable[[Any], Any]:
    return jp_asyncio_loop.run_until_complete


def _events(jp_fetch: Any, run: Callable[[Any], Any], job_id: str) -> list[dict[str, Any]]:
    r = run(jp_fetch("sdpanel", "api", "jobs", job_id, "events", request_timeout=900))
    out = []
    for block in r.body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            out.append({"event": fields["event"], "data": json.loads(fields["data"])})
    return out


def test_rest_txt2img_with_lora_streams_progress_and_serves_the_image(jp_fetch: Any, run: Any,
                                                                       storage: Path) -> None:
    body = {"prompt": "a lighthouse", "checkpoint": CKPT, "steps": 2, "width": 64, "height": 64,
            "seed": 31, "loras": [f"{LORA}:0.8"], "batch_size": 2}
    r = run(jp_fetch("sdpanel", "api", "jobs", method="POST", body=json.dumps(body), raise_error=False))
    assert r.code == 201, r.body
    job = json.loads(r.body)
    events = _events(jp_fetch, run, job["id"])
    kinds = [e["event"] for e in events]
    assert kinds[0] == "queued" and kinds[-1] == "done", kinds
    assert "progress" in kinds and "preview" in kinds
    done = events[-1]["data"]
    assert done["state"] == "succeeded" and len(done["images"]) == 2, done
    for i in range(2):
        img = run(jp_fetch("sdpanel", "api", "jobs", job["id"], "images", str(i)))
        assert img.headers["Content-Type"] == "image/png"
        assert image_info(img.body).width == 64
        assert "Seed: 31," in read_text(img.body)["parameters"]


def test_rest_unknown_checkpoint_is_a_field_error(jp_fetch: Any, run: Any, storage: Path) -> None:
    body = {"prompt": "x", "checkpoint": "nope.safetensors", "steps": 1, "width": 64, "height": 64}
    r = run(jp_fetch("sdpanel", "api", "jobs", method="POST", body=json.dumps(body), raise_error=False))
    assert r.code == 400 and "checkpoint" in json.loads(r.body)["errors"]
