"""The jobs REST + SSE API with no WebUI: the built-in engine's worker (real diffusers on
CPU, random-weight SD1.5) takes the job, with the same events and PNGs as a WebUI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("diffusers", reason="the built-in engine needs sdpanel[engine]")

from sdpanel.generate import get_service, read_text  # noqa: E402
from sdpanel.storage import StorageRoot  # noqa: E402
from tests.fixtures.comfy_env import cache_dir  # noqa: E402
from tests.fixtures.sd15_checkpoint import place, sd15_checkpoint  # noqa: E402
from tests.server.test_jobs_api import post_job  # noqa: E402

CKPT = "sd15-random.safetensors"
# pytest-jupyter points HOME at a temporary folder: the cached checkpoint is under the real one.
TEST_CACHE = cache_dir()


def test_no_webui_runs_the_job_on_the_builtin_engine(jp_fetch, run, storage: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDPANEL_TEST_CACHE", str(TEST_CACHE))
    root = StorageRoot.at(storage).ensure()
    place(sd15_checkpoint(), root.kind_dir("checkpoints") / CKPT)
    options = json.loads(run(jp_fetch("sdpanel", "api", "generate", "options")).body)
    assert options["builtin"]["available"] is True and options["backends"] == []
    r = post_job(jp_fetch, run, {"prompt": "a boat", "checkpoint": CKPT, "width": 64, "height": 64,
                                 "steps": 2, "seed": 12})
    assert r.code == 201, r.body
    job = json.loads(r.body)
    try:
        stream = run(jp_fetch("sdpanel", "api", "jobs", job["id"], "events", request_timeout=900))
        events = [dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
                  for block in stream.body.decode().split("\n\n") if "event: " in block]
        kinds = [e["event"] for e in events]
        assert kinds[:2] == ["queued", "running"] and kinds[-1] == "done", kinds
        assert json.loads(events[1]["data"])["backend"] == "builtin"
        assert kinds.count("progress") == 2 and "preview" in kinds
        img = run(jp_fetch("sdpanel", "api", "jobs", job["id"], "images", "0"))
        assert img.headers["Content-Type"] == "image/png"
        assert "Seed: 12," in read_text(img.body)["parameters"]
        after = json.loads(run(jp_fetch("sdpanel", "api", "generate", "options")).body)
        assert [b["flavour"] for b in after["backends"]] == ["builtin"]
    finally:
        service = get_service(root)
        backend = service.builtin()
        if backend is not None:
            service.runtime.submit(backend.close()).wait(30)
