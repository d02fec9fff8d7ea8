"""The service the Launch panel and notebook cell 4 use: install with fallbacks and
extensions, launch linked to the store, events, logs, re-attach, stop."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import aiohttp
import pytest

from sdpanel.runtime import EventBus, LogEvent, StateEvent
from sdpanel.webuis import Extension, WebUIService, installed_info, webui_info
from tests.fixtures.range_server import RangeServer
from tests.fixtures.webui_packages import build_tree, make_git_repo, make_zip, stub_repo


def _patch_registry(monkeypatch: pytest.MonkeyPatch, **changes: object) -> None:
    info = dataclasses.replace(webui_info("comfyui"), **changes)
    import sdpanel.webuis._service as service_mod

    monkeypatch.setattr(service_mod, "webui_info", lambda _w: info)


async def test_install_falls_back_package_then_git_with_extensions(
        svc: WebUIService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, head = stub_repo(tmp_path / "repo")
    node, _ = make_git_repo(tmp_path / "node", {"__init__.py": "NODE_CLASS_MAPPINGS = {}\n"})
    with RangeServer() as srv:
        _patch_registry(monkeypatch, packages=[srv.url("missing.zip")], repository=f"file://{repo}", prebuilt={},
                        ref=None, commit=head,
                        extensions=[Extension("good-node", f"file://{node}"),
                                    Extension("broken-node", f"file://{tmp_path}/nope")])
        res = await svc.install("comfyui", with_pip=False)
    assert res.method == "git" and res.version == head
    assert "extension good-node: installed" in res.notes  # what happened to it, not just "ok"
    assert any(n.startswith("extension broken-node: git fetch failed") for n in res.notes)
    wd = svc.webui_dir("comfyui")
    assert (wd / "custom_nodes" / "good-node" / "__init__.py").is_file()
    assert (wd / "extra_model_paths.yaml").is_file()  # linked to the store
    warn = [e.message for e in svc.events if isinstance(e, LogEvent) and e.level == "warning"]  # type: ignore[attr-defined]
    assert any("missing.zip failed" in m and "HTTP 404" in m for m in warn)


async def test_launch_panel_flow(svc: WebUIService, tmp_path: Path) -> None:
    pkg = make_zip(build_tree(tmp_path / "tree"), tmp_path / "ComfyUI.zip")
    with RangeServer() as srv:
        srv.add_file(pkg.name, pkg)
        await svc.install("comfyui", source=srv.url(pkg.name), extensions=False)
    assert installed_info(svc.webui_dir("comfyui"))
    (svc.storage.kind_dir("vae") / "sdxl_vae.safetensors").write_bytes(b"v")
    res = await svc.launch("comfyui", port=0, env={"STUB_WEBUI_DELAY": "0.1"}, jupyter_base_url="/user/me/")
    assert res.state == "ready" and res.jupyter_url == f"/user/me/proxy/{res.port}/"
    async with aiohttp.ClientSession() as s, s.get(f"{res.local_url}/models/vae") as r:
        assert await r.json() == ["sdxl_vae.safetensors"]
    states = [e.state for e in svc.events if isinstance(e, StateEvent) and e.key == "comfyui"]  # type: ignore[attr-defined]
    assert states[:2] == ["installing", "installed"] and states[-2:] == ["starting", "ready"]
    assert any("To see the GUI" in line for line in svc.logs("comfyui"))
    # a new kernel: a fresh service re-attaches, sees it ready, and can stop it
    fresh = WebUIService(svc.storage, EventBus(), webuis_dir=svc.webuis_dir)
    found = await fresh.attach_all()
    assert [(p.name, p.port, p.state) for p in found] == [("comfyui", res.port, "ready")]
    assert [r["state"] for r in fresh.ps()] == ["ready"]
    assert await fresh.stop("comfyui")
    assert fresh.ps() == []


def test_cell4_launch_from_settings_and_keep_alive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Headless cell 4: settings in, blocks until ready, links out; keep_alive returns when
    the WebUI goes away."""
    import threading

    from sdpanel.settings import Settings
    from sdpanel.webuis import keep_alive, launch_from_settings, webui_service

    monkeypatch.setenv("SDPANEL_WEBUIS_DIR", str(tmp_path / "webuis"))
    monkeypatch.setenv("STUB_WEBUI_DELAY", "0.1")
    store = tmp_path / "store"
    pkg = make_zip(build_tree(tmp_path / "tree"), tmp_path / "ComfyUI.zip")
    svc = webui_service(store)
    from sdpanel.runtime import get_runtime

    with RangeServer() as srv:
        srv.add_file(pkg.name, pkg)
        get_runtime().submit(svc.install("comfyui", source=srv.url(pkg.name), extensions=False)).wait(60)
    settings = Settings(webui="comfyui", tunnel="none", gpu_index=0, webui_port=0, launch_args="--preview-method auto")
    res = launch_from_settings(settings, store)
    assert res.state == "ready" and res.port and "local:   http://127.0.0.1:" in res.summary()
    done: list[object] = []
    t = threading.Thread(target=lambda: done.append(keep_alive("comfyui", store, poll=0.2)))
    t.start()
    t.join(1.0)
    assert t.is_alive()  # blocks while the WebUI runs
    get_runtime().submit(svc.stop("comfyui")).wait(30)
    t.join(10)
    assert not t.is_alive()
