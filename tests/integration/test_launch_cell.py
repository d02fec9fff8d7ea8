"""Notebook cell 4 headless (``sdpanel.cells.launch``): off by default, else install →
start → ready → links printed; a failure is one sentence naming cause and fix."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdpanel.cells import LaunchCellError, launch
from sdpanel.runtime import get_runtime
from sdpanel.webuis import free_port, webui_service
from tests.fixtures.range_server import RangeServer
from tests.fixtures.webui_packages import build_tree, make_zip


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SDPANEL_HEADLESS", "1")
    monkeypatch.setenv("SDPANEL_STORAGE", str(tmp_path / "store"))
    monkeypatch.setenv("SDPANEL_WEBUIS_DIR", str(tmp_path / "webuis"))
    monkeypatch.setenv("SDPANEL_PLATFORM", "local")
    monkeypatch.setenv("STUB_WEBUI_DELAY", "0.2")
    # A port of its own (not the registry's 8188+, where other suites start stub WebUIs).
    monkeypatch.setenv("SDPANEL_WEBUI_PORT", str(free_port()))
    store = tmp_path / "store"
    yield store
    svc = webui_service(store)
    for name in list(svc.manager.procs):
        get_runtime().submit(svc.stop(name)).wait(30)


def _install(store: Path, tmp_path: Path) -> None:
    pkg = make_zip(build_tree(tmp_path / "tree"), tmp_path / "ComfyUI.zip")
    with RangeServer() as srv:
        srv.add_file(pkg.name, pkg)
        get_runtime().submit(webui_service(store).install("comfyui", source=srv.url(pkg.name),
                                                          extensions=False)).wait(60)


def test_off_by_default_installs_nothing(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert launch() is None
    out = capsys.readouterr().out
    assert "Launch: off" in out and "LAUNCH = True" in out
    assert not (Path(os.environ["SDPANEL_WEBUIS_DIR"]) / "comfyui").exists()


def test_headless_launch_prints_links_and_keeps_alive(store: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _install(store, tmp_path)
    res = launch(launch=True)
    out = capsys.readouterr().out
    assert res.state == "ready" and f"local:   http://127.0.0.1:{res.port}" in out
    # keep_alive: the cell blocks while the WebUI runs and returns when it stops.
    done: list[object] = []
    t = threading.Thread(target=lambda: done.append(launch(launch=True, keep_alive=True)))
    t.start()
    t.join(2.0)
    assert t.is_alive()
    get_runtime().submit(webui_service(store).stop("comfyui")).wait(30)
    t.join(20)
    assert not t.is_alive() and done
    assert "keeping this cell running" in capsys.readouterr().out


def test_crash_at_start_is_one_sentence(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _install(store, tmp_path)
    webui_service(store).manager.restart_delay = 0.1
    monkeypatch.setenv("STUB_WEBUI_CRASH", "1")
    with pytest.raises(LaunchCellError) as err:
        launch(launch=True)
    msg = str(err.value)
    assert msg.startswith("ComfyUI exited with code 3 while starting") and "run this cell again" in msg
    assert "\n" not in msg
    assert err.value._render_traceback_() == [f"LaunchCellError: {msg}"]
    assert "Last log lines:" in capsys.readouterr().out


def test_package_404_is_one_sentence(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import sdpanel.webuis._service as service_mod
    from sdpanel.webuis import webui_info

    with RangeServer() as srv:
        info = dataclasses.replace(webui_info("comfyui"), packages=[srv.url("missing.zip")],
                                   repository=f"file://{store.parent}/no-such-repo", extensions=[])
        monkeypatch.setattr(service_mod, "webui_info", lambda _w: info)
        with pytest.raises(LaunchCellError) as err:
            launch(launch=True)
    msg = str(err.value)
    assert msg.startswith("ComfyUI could not be installed:") and "check the network or the package URL" in msg
    assert "\n" not in msg

