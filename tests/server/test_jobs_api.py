"""The jobs REST + SSE API through a real jupyter-server (pytest-jupyter), authentication
and XSRF on, the queue driving a stub ComfyUI found through its pid record."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from tornado.httpclient import HTTPClientError

from sdpanel.generate import read_text
from sdpanel.generate._api import ROUTES, JobsHandler, openapi_document
from sdpanel.generate._png import gradient_png
from sdpanel.storage import StorageRoot
from tests.fixtures.stub_comfyui import StubComfyUI


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Test-only: mount the generation routes unless sdpanel.server already does."""
    from jupyter_server.utils import url_path_join

    from sdpanel.server import API_PREFIX

    def mounted(router: Any) -> bool:
        for rule in getattr(router, "rules", []):
            if rule.target is JobsHandler or mounted(rule.target):
                return True
        return False

    if mounted(serverapp.web_app.default_router) or mounted(serverapp.web_app.wildcard_router):
        return
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [(url_path_join(base, API_PREFIX, p), c) for p, c in ROUTES])


@pytest.fixture
def jp_server_config(storage: Path) -> dict[str, object]:
    return {"ServerApp": {"jpserver_extensions": {"sdpanel.server": True, __name__: True}}}


@pytest.fixture
def comfy(storage: Path) -> Iterator[StubComfyUI]:
    root = StorageRoot.at(storage).ensure()
    (root.kind_dir("checkpoints") / "model.safetensors").write_bytes(b"x")
    stub = StubComfyUI(step_delay=0.01).start()
    # As the WebUI process manager records a running WebUI (our own pid: alive).
    root.state_path("pids", "webui-comfyui.json").write_text(json.dumps(
        {"name": "comfyui", "pid": os.getpid(), "port": stub.port, "kind": "webui",
         "cmdline": psutil.Process().cmdline()}))
    yield stub
    stub.stop()


def post_job(jp_fetch, run, body: dict[str, Any], **kw: Any):
    return run(jp_fetch("sdpanel", "api", "jobs", method="POST", body=json.dumps(body),
                        raise_error=False, **kw))


def sse(jp_fetch, run, job_id: str, last: int | None = None) -> list[dict[str, Any]]:
    headers = {"Last-Event-ID": str(last)} if last is not None else {}
    r = run(jp_fetch("sdpanel", "api", "jobs", job_id, "events", headers=headers, request_timeout=30))
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events = []
    for block in r.body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            events.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return events


GOOD = {"prompt": "a fox", "checkpoint": "model.safetensors", "steps": 5, "width": 256, "height": 128}


def test_post_job_streams_events_and_serves_images(jp_fetch, run, comfy: StubComfyUI) -> None:
    r = post_job(jp_fetch, run, {**GOOD, "seed": 99})
    assert r.code == 201, r.body
    job = json.loads(r.body)
    assert job["state"] in ("queued", "running") and job["seed"] == 99
    assert r.headers["Location"].endswith(f"/sdpanel/api/jobs/{job['id']}")
    events = sse(jp_fetch, run, job["id"])
    kinds = [e["event"] for e in events]
    assert kinds[0] == "queued" and kinds[1] == "running" and kinds[-1] == "done"
    assert "progress" in kinds and "preview" in kinds
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    done = events[-1]["data"]
    assert done["state"] == "succeeded" and done["seed"] == 99
    url = done["images"][0]["url"]
    assert url.endswith(f"/sdpanel/api/jobs/{job['id']}/images/0")
    img = run(jp_fetch("sdpanel", "api", "jobs", job["id"], "images", "0"))
    assert img.headers["Content-Type"] == "image/png"
    assert "Seed: 99," in read_text(img.body)["parameters"]
    got = json.loads(run(jp_fetch("sdpanel", "api", "jobs", job["id"])).body)
    assert got["state"] == "succeeded" and got["images"][0]["url"] == url
    listing = json.loads(run(jp_fetch("sdpanel", "api", "jobs", params={"state": "succeeded"})).body)
    assert [j["id"] for j in listing["jobs"]] == [job["id"]]
    missing = run(jp_fetch("sdpanel", "api", "jobs", job["id"], "images", "5", raise_error=False))
    assert missing.code == 404 and "has 1 image" in json.loads(missing.body)["message"]
    # A user cleans the outputs folder: the job stays listed and says its image is gone.
    assert got["images"][0]["available"] is True
    Path(got["images"][0]["path"]).unlink()
    gone = json.loads(run(jp_fetch("sdpanel", "api", "jobs", job["id"])).body)
    assert gone["images"][0]["available"] is False


def test_sse_resumes_after_last_event_id(jp_fetch, run, comfy: StubComfyUI) -> None:
    job = json.loads(post_job(jp_fetch, run, GOOD).body)
    full = sse(jp_fetch, run, job["id"])
    cut = full[2]["id"]
    resumed = sse(jp_fetch, run, job["id"], last=cut)
    # Everything after the cut comes again, in order; of the previews only the newest is kept.
    assert [e["id"] for e in resumed if e["event"] != "preview"] == [
        e["id"] for e in full if e["id"] > cut and e["event"] != "preview"]
    assert [e["event"] for e in resumed].count("preview") <= 1
    assert resumed[-1]["event"] == "done"
    q = run(jp_fetch("sdpanel", "api", "jobs", job["id"], "events",
                     params={"last_event_id": str(full[-2]["id"])}))
    assert q.body.decode().count("event: ") == 1


def test_invalid_job_is_400_with_every_field(jp_fetch, run, comfy: StubComfyUI) -> None:
    bomb_header = gradient_png(8, 8)[:16] + (50000).to_bytes(4, "big") * 2 + gradient_png(8, 8)[24:]
    r = post_job(jp_fetch, run, {"prompt": "", "checkpoint": "nope.safetensors", "width": 513,
                                 "steps": 1000, "mode": "img2img", "init_image": base64.b64encode(bomb_header).decode()})
    assert r.code == 400
    body = json.loads(r.body)
    assert set(body["errors"]) == {"prompt", "checkpoint", "width", "steps", "init_image"}
    assert "limit" in body["errors"]["init_image"]
    assert post_job(jp_fetch, run, "not an object").code == 400  # type: ignore[arg-type]
    bad = run(jp_fetch("sdpanel", "api", "jobs", method="POST", body="{oops", raise_error=False))
    assert bad.code == 400 and "JSON" in json.loads(bad.body)["message"]


def test_cancel_queued_and_running_over_rest(jp_fetch, run, comfy: StubComfyUI) -> None:
    comfy.step_delay = 0.05
    running = json.loads(post_job(jp_fetch, run, {**GOOD, "steps": 150}).body)
    queued = json.loads(post_job(jp_fetch, run, GOOD).body)
    r = run(jp_fetch("sdpanel", "api", "jobs", queued["id"], method="DELETE"))
    assert json.loads(r.body)["state"] == "cancelled"
    run(jp_fetch("sdpanel", "api", "jobs", running["id"], method="DELETE"))
    events = sse(jp_fetch, run, running["id"])
    assert events[-1]["event"] == "error" and events[-1]["data"]["state"] == "cancelled"
    assert comfy.interrupts == 1
    gone = run(jp_fetch("sdpanel", "api", "jobs", "nope", raise_error=False))
    assert gone.code == 404 and "no job" in json.loads(gone.body)["message"]


def test_queue_full_is_429(jp_fetch, run, comfy: StubComfyUI) -> None:
    from sdpanel.generate import get_service

    service = get_service()
    service.queue.max_queued = 1
    comfy.step_delay = 0.05
    codes = [post_job(jp_fetch, run, {**GOOD, "steps": 100}).code for _ in range(3)]
    assert codes[:2] == [201, 201] and codes[2] == 429
    r = post_job(jp_fetch, run, GOOD)
    assert "queue is full" in json.loads(r.body)["message"] and r.headers["Retry-After"]
    for job in service.queue.jobs():
        service.queue.cancel(job.id)


def test_no_webui_is_503(jp_fetch, run, storage: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the engine packages (with them the built-in engine takes the job).
    monkeypatch.setattr("sdpanel.generate._builtin.has_engine_packages", lambda: False)
    StorageRoot.at(storage).ensure()
    (StorageRoot.at(storage).kind_dir("checkpoints") / "model.safetensors").write_bytes(b"x")
    r = post_job(jp_fetch, run, GOOD)
    assert r.code == 503 and "No WebUI is running" in json.loads(r.body)["message"]


def _concrete(pattern: str) -> str:
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: {"job_id": "x1", "n": "0"}[m.group(1)], pattern)


@pytest.mark.parametrize("pattern,cls", ROUTES)
def test_every_route_refuses_unauthenticated(pattern, cls, jp_serverapp, http_server_client, run,
                                             jp_base_url: str) -> None:
    url = f"{jp_base_url.rstrip('/')}/sdpanel/api/{_concrete(pattern)}"
    methods = [m for m in ("GET", "POST", "DELETE") if m.lower() in cls.__dict__]
    assert methods
    for method in methods:
        with pytest.raises(HTTPClientError) as err:
            run(http_server_client.fetch(url, method=method, body="{}" if method == "POST" else None,
                                         follow_redirects=False))
        assert err.value.code in (401, 403), (method, url)


def _login_cookie(jp_serverapp, http_server_client, run, jp_base_url: str) -> str:
    token = jp_serverapp.identity_provider.token
    r = run(http_server_client.fetch(f"{jp_base_url.rstrip('/')}/sdpanel/api/jobs?token={token}"))
    cookies = [c.split(";", 1)[0] for c in r.headers.get_list("Set-Cookie")]
    assert cookies, "logging in with ?token= should set a cookie"
    return "; ".join(cookies)


@pytest.mark.parametrize("method,path", [("POST", "jobs"), ("DELETE", "jobs/x1")])
def test_writes_need_the_xsrf_token(method, path, jp_serverapp, http_server_client, run,
                                    jp_base_url: str, comfy: StubComfyUI) -> None:
    cookie = _login_cookie(jp_serverapp, http_server_client, run, jp_base_url)
    url = f"{jp_base_url.rstrip('/')}/sdpanel/api/{path}"
    body = json.dumps(GOOD) if method == "POST" else None
    with pytest.raises(HTTPClientError) as err:  # the session cookie alone is not enough
        run(http_server_client.fetch(url, method=method, body=body, headers={"Cookie": cookie}))
    assert err.value.code == 403
    xsrf = "2|abcdef01|0123456789abcdef0123456789abcdef|1700000000"
    ok = run(http_server_client.fetch(url, method=method, body=body, raise_error=False, headers={
        "Cookie": f"{cookie}; _xsrf={xsrf}", "X-XSRFToken": xsrf}))
    assert ok.code in ((201,) if method == "POST" else (404,))


def test_openapi_matches_the_routes(jp_fetch, run) -> None:
    served = json.loads(run(jp_fetch("sdpanel", "api", "openapi.json")).body)
    assert served == openapi_document()
    documented = {path: {m for m in ops if m in ("get", "post", "delete", "put", "patch")}
                  for path, ops in served["paths"].items()}
    routed = {}
    for pattern, cls in ROUTES:
        path = "/sdpanel/api/" + re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)
        routed[path] = {m for m in ("get", "post", "delete", "put", "patch") if m in cls.__dict__}
    assert routed == documented


def test_sse_reconnect_mid_job_misses_nothing(jp_fetch, run, comfy: StubComfyUI, jp_http_port: int,
                                              jp_base_url: str, jp_auth_header: dict[str, str]) -> None:
    import aiohttp
    import yarl

    comfy.step_delay = 0.03
    job = json.loads(post_job(jp_fetch, run, {**GOOD, "steps": 30}).body)
    # encoded=True: keep the base URL's %40 as the server routes it
    url = yarl.URL(f"http://127.0.0.1:{jp_http_port}{jp_base_url}sdpanel/api/jobs/{job['id']}/events",
                   encoded=True)

    async def read(last: int | None, stop_after: int | None) -> list[tuple[int, str]]:
        headers = dict(jp_auth_header)
        if last is not None:
            headers["Last-Event-ID"] = str(last)
        seen: list[tuple[int, str]] = []
        block: dict[str, str] = {}
        async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
            assert r.status == 200, (r.status, await r.text())
            async for raw in r.content:
                line = raw.decode().rstrip("\n")
                if line:
                    if ": " in line and not line.startswith(":"):
                        k, v = line.split(": ", 1)
                        block[k] = v
                    continue
                if "event" in block:
                    seen.append((int(block["id"]), block["event"]))
                    if stop_after is not None and sum(e == "progress" for _, e in seen) >= stop_after:
                        return seen  # drop the connection mid-job
                block = {}
        return seen

    first = run(read(None, stop_after=3))
    assert first[-1][1] == "progress"
    rest = run(read(first[-1][0], stop_after=None))
    assert rest[0][0] > first[-1][0] and rest[-1][1] == "done"
    steps = [e for e in first + rest if e[1] == "progress"]
    ids = [i for i, _ in first + rest]
    assert ids == sorted(set(ids))  # no duplicates, in order
    assert len(steps) == 30  # every progress event exactly once across the two connections


def test_options_for_the_generate_form(jp_fetch, run, comfy: StubComfyUI, storage: Path) -> None:
    (storage / "loras" / "styles").mkdir(parents=True, exist_ok=True)
    (storage / "loras" / "styles" / "ink.safetensors").write_bytes(b"x")
    data = json.loads(run(jp_fetch("sdpanel", "api", "generate", "options")).body)
    assert data["models"]["checkpoints"] == ["model.safetensors"]
    assert data["models"]["loras"] == ["styles/ink.safetensors"]
    assert {"name": "euler_ancestral", "label": "Euler a"} in data["samplers"]
    assert data["modes"] == ["txt2img", "img2img", "inpaint"]
    assert [b["flavour"] for b in data["backends"]] == ["comfyui"] and data["backends"][0]["job"] is None


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_img2img_and_inpaint_over_rest(mode: str, jp_fetch, run, comfy: StubComfyUI) -> None:
    """The two image modes end to end through POST /jobs and SSE: the input image (and the
    mask) travel base64-encoded and reach the WebUI as uploads; the result is a PNG of the
    input's size."""
    from sdpanel.generate._png import encode_png, image_info

    init = gradient_png(96, 64)
    mask = encode_png(96, 64, [bytes(255 if 24 <= x < 48 else 0 for x in range(96)) for _ in range(64)], 1)
    body: dict[str, Any] = {**GOOD, "mode": mode, "width": 96, "height": 64, "denoise": 0.6,
                            "init_image": base64.b64encode(init).decode()}
    if mode == "inpaint":
        body["mask"] = "data:image/png;base64," + base64.b64encode(mask).decode()
    r = post_job(jp_fetch, run, body)
    assert r.code == 201, r.body
    job = json.loads(r.body)
    events = sse(jp_fetch, run, job["id"])
    assert events[-1]["event"] == "done", events[-1]
    assert init in comfy.uploads.values()
    if mode == "inpaint":
        assert mask in comfy.uploads.values()
    png = run(jp_fetch("sdpanel", "api", "jobs", job["id"], "images", "0")).body
    assert (image_info(png).width, image_info(png).height) == (96, 64)
    assert "Denoising strength: 0.6" in read_text(png)["parameters"]
