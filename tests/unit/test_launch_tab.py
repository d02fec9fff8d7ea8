"""The Launch tab's Python side with the stub WebUI: intents reach the WebUI service (install
from a package on the local range server, start, stop, restart), service events become the
small ``launch_status`` / ``launch_log`` traits, a crash shows its exit code and last lines,
and a tunnel's password reaches the browser once as a custom message, never a trait."""

from __future__ import annotations

import contextlib
import json
import os
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sdpanel.panels._launch_tab import LOG_LINES, LaunchController, parse_form
from sdpanel.runtime import get_runtime
from sdpanel.storage import StorageRoot
from sdpanel.webuis import WebUIService, free_port
from tests.fixtures.range_server import RangeServer
from tests.fixtures.stub_tunnels import install_stub_tools
from tests.fixtures.waiting import wait_for
from tests.fixtures.webui_packages import build_tree, make_zip

TRAITS = ("launch_webuis", "launch_status", "launch_log", "launch_webui")


class FakePanel:
    """What the controller needs of a Panel: traits as attributes, hold_sync, send, observe."""

    def __init__(self) -> None:
        self.launch_webuis: dict[str, Any] = {}
        self.launch_status: dict[str, Any] = {}
        self.launch_log: dict[str, Any] = {}
        self.launch_webui = ""
        self.sent: list[dict[str, Any]] = []
        self.observers: list[Callable[[Any], None]] = []

    @contextlib.contextmanager
    def hold_sync(self) -> Iterator[None]:
        yield

    def send(self, msg: dict[str, Any]) -> None:
        self.sent.append(msg)

    def observe(self, fn: Callable[[Any], None], names: list[str]) -> None:
        self.observers.append(fn)

    def unobserve(self, fn: Callable[[Any], None], names: list[str]) -> None:
        self.observers.remove(fn)

    def traits_json(self) -> str:
        return json.dumps({t: getattr(self, t) for t in TRAITS})


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("SDPANEL_STORAGE", str(tmp_path / "store"))
    monkeypatch.setenv("SDPANEL_WEBUIS_DIR", str(tmp_path / "webuis"))
    monkeypatch.setenv("STUB_WEBUI_DELAY", "0.2")
    # A port of its own (not the registry's 8188+, where other suites start stub WebUIs).
    monkeypatch.setenv("SDPANEL_WEBUI_PORT", str(free_port()))
    install_stub_tools(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    rt = get_runtime()
    svc = WebUIService(StorageRoot.at(tmp_path / "store"), rt.bus, webuis_dir=tmp_path / "webuis")
    panel = FakePanel()
    ctl = LaunchController(panel, lambda: svc, max_rate=50)
    ctl.attach()
    pkg = make_zip(build_tree(tmp_path / "tree"), tmp_path / "ComfyUI.zip")
    with RangeServer() as srv:
        srv.add_file(pkg.name, pkg)
        yield {"panel": panel, "ctl": ctl, "svc": svc, "url": srv.url(pkg.name)}
    for name in list(svc.manager.procs):
        rt.submit(svc.stop(name)).wait(30)
    ctl.detach()


def status(panel: FakePanel, wid: str = "comfyui") -> dict[str, Any]:
    return dict(panel.launch_status.get(wid) or {})


def install(env: dict[str, Any]) -> None:
    env["ctl"].install({"webui": "comfyui", "source": env["url"], "extensions": False})
    wait_for(lambda: status(env["panel"]).get("state") == "installed" and not status(env["panel"])["busy"],
             what="installed")


def test_registry_and_form_defaults(env: dict[str, Any]) -> None:
    panel = env["panel"]
    reg = panel.launch_webuis
    assert [w["id"] for w in reg["webuis"]][:1] == ["comfyui"]
    assert {"comfyui", "forge", "a1111", "sdnext"} <= {w["id"] for w in reg["webuis"]}
    assert "cloudflared" in reg["tunnels"] and reg["defaults"]["tunnels"] == []
    assert panel.launch_webui == "comfyui"  # the settings' WebUI is picked
    wait_for(lambda: status(panel).get("state") == "not_installed", what="seeded state")


def test_parse_form_errors_name_the_field() -> None:
    assert parse_form({"webui": "ComfyUI", "gpu": "cpu", "tunnels": ["none"]})["gpu"] is None
    assert parse_form({"webui": "forge", "gpu": "1", "args": "--xformers"})["gpu"] == 1
    with pytest.raises(ValueError, match="Unknown WebUI 'nope'"):
        parse_form({"webui": "nope"})
    with pytest.raises(ValueError, match="GPU: 'x' is not a GPU number"):
        parse_form({"webui": "comfyui", "gpu": "x"})
    with pytest.raises(ValueError, match="Arguments: .*quot"):
        parse_form({"webui": "comfyui", "args": '--x "open'})
    with pytest.raises(ValueError, match="Unknown tunnel"):
        parse_form({"webui": "comfyui", "tunnels": ["teleport"]})


def test_install_start_log_links_stop(env: dict[str, Any]) -> None:
    panel, ctl = env["panel"], env["ctl"]
    with pytest.raises(ValueError, match="not installed yet: press Install"):
        ctl.start({"webui": "comfyui"})
    ctl.install({"webui": "comfyui", "source": env["url"], "extensions": False})
    wait_for(lambda: status(panel).get("state") == "installed" and not status(panel)["busy"], what="installed")
    assert status(panel)["installed"] is True and status(panel)["progress"] is None
    assert (env["svc"].webui_dir("comfyui") / "main.py").is_file()

    ctl.start({"webui": "comfyui", "gpu": None, "args": "--preview-method auto", "tunnels": []})
    wait_for(lambda: status(panel).get("state") == "ready" and not status(panel)["busy"], what="ready")
    st = status(panel)
    assert st["port"] and st["pid"] and st["url"] == f"http://127.0.0.1:{st['port']}"
    with urllib.request.urlopen(f"{st['url']}/system_stats", timeout=5) as r:
        assert r.status == 200
    log = wait_for(lambda: panel.launch_log if "To see the GUI" in panel.launch_log.get("text", "") else None,
                   what="log tail")
    assert log["webui"] == "comfyui" and log["lines"] <= LOG_LINES
    assert "--cpu" in log["text"]  # "CPU only" adds the WebUI's CPU flag (in the start line)

    ctl.restart({"webui": "comfyui"})
    wait_for(lambda: status(panel)["busy"] == "restarting", timeout=5, what="restarting")
    wait_for(lambda: status(panel).get("state") == "ready" and not status(panel)["busy"], what="ready again")
    ctl.stop({"webui": "comfyui"})
    wait_for(lambda: status(panel).get("state") == "stopped" and not status(panel)["busy"], what="stopped")
    assert not env["svc"].manager.get("comfyui").alive()
    assert status(panel)["error"] == ""


def test_crash_shows_exit_code_and_last_lines(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    panel, ctl, svc = env["panel"], env["ctl"], env["svc"]
    install(env)
    svc.manager.restart_delay = 0.1
    monkeypatch.setenv("STUB_WEBUI_CRASH", "1")
    ctl.start({"webui": "comfyui", "gpu": None})
    wait_for(lambda: status(panel).get("state") == "crashed" and not status(panel)["busy"], what="crashed")
    st = status(panel)
    assert st["exit_code"] == 3 and st["restarting"] is False
    assert st["tail"] and len(st["tail"]) <= 20 and any("Traceback" in x or "Error" in x for x in st["tail"])
    assert "crashed 3 times" in st["message"]
    assert st["error"].startswith("Start failed: it exited with code 3 again and again while starting. Fix")
    assert st["retry"] == "launch.start"
    ctl.dismiss({"webui": "comfyui"})
    wait_for(lambda: status(panel)["error"] == "", what="dismissed")


def test_tunnel_password_is_sent_once_and_never_a_trait(env: dict[str, Any]) -> None:
    panel, ctl = env["panel"], env["ctl"]
    install(env)
    ctl.start({"webui": "comfyui", "gpu": None, "tunnels": ["cloudflared"]})
    wait_for(lambda: status(panel).get("state") == "ready" and not status(panel)["busy"], timeout=60, what="ready")
    row = wait_for(lambda: next((t for t in status(panel)["tunnels"] if t.get("url")), None), what="tunnel row")
    assert row["tool"] == "cloudflared" and row["url"].startswith("https://") and row["secret"] is True
    secrets = [m for m in panel.sent if m.get("type") == "launch-secret"]
    assert len(secrets) == 1 and secrets[0]["tool"] == "cloudflared" and len(secrets[0]["password"]) >= 12
    password = secrets[0]["password"]
    assert password not in panel.traits_json()
    # A view that opens before anyone saw it gets it again; once shown, it is forgotten.
    ctl.hello()
    assert len([m for m in panel.sent if m.get("type") == "launch-secret"]) == 2
    ctl.secret_seen({"webui": "comfyui", "tool": "cloudflared"})
    ctl.hello()
    assert len([m for m in panel.sent if m.get("type") == "launch-secret"]) == 2
    assert password not in panel.traits_json()
    assert password not in "\n".join(env["svc"].logs("comfyui", 500))
    # A new kernel's panel re-attaches: ready, the same port, the tunnel's URL, no password.
    rt = get_runtime()
    fresh_svc = WebUIService(env["svc"].storage, rt.bus, webuis_dir=env["svc"].webuis_dir)
    fresh = FakePanel()
    fresh_ctl = LaunchController(fresh, lambda: fresh_svc, max_rate=50)
    fresh_ctl.attach()
    try:
        st = wait_for(lambda: status(fresh) if status(fresh).get("state") == "ready" and status(fresh)["tunnels"]
                      else None, what="re-attached")
        assert st["port"] == status(panel)["port"] and st["installed"] is True
        assert st["tunnels"][0]["url"] == row["url"] and st["tunnels"][0]["secret"] is False
        assert "To see the GUI" in wait_for(lambda: fresh.launch_log.get("text"), what="re-attached log")
        assert password not in fresh.traits_json() and not fresh.sent
    finally:
        fresh_ctl.detach()
        # Leave the WebUI to the first service: the fresh one stops watching it.
        for task in fresh_svc.manager._monitors.values():
            rt.loop.call_soon_threadsafe(task.cancel)
        for proc in fresh_svc.manager.procs.values():
            rt.loop.call_soon_threadsafe(proc.stop_following)
    ctl.stop({"webui": "comfyui"})
    wait_for(lambda: status(panel).get("state") == "stopped" and not status(panel)["busy"], what="stopped")
    assert status(panel)["tunnels"] == []


def test_log_tail_is_bounded_and_redacted(planted_tokens: dict[str, str]) -> None:
    from sdpanel.runtime import LogEvent

    panel = FakePanel()
    ctl = LaunchController(panel, lambda: None, max_rate=50)  # type: ignore[arg-type,return-value]
    panel.launch_webui = "comfyui"
    token = planted_tokens["HF_TOKEN"]
    for i in range(1000):
        ctl._on_event(LogEvent(topic="webui:comfyui", key="comfyui", message=f"line {i} " + "x" * 600))
    ctl._on_event(LogEvent(topic="webui:comfyui", key="comfyui", message=f"token {token} here"))
    _status, log = ctl.snapshot()
    assert log["lines"] <= LOG_LINES and len(log["text"]) <= 24_000
    assert log["text"].endswith("here") and token not in log["text"]
    assert "line 999 " in log["text"] and "line 100 " not in log["text"]
    ctl.detach()


def test_skipped_prebuilt_source_shows_in_the_log(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fixtures.hf_server import HFServer

    panel, ctl = env["panel"], env["ctl"]
    with HFServer() as hf:  # a mirror without the ANXETY files: that source is skipped, said why
        monkeypatch.setenv("HF_ENDPOINT", hf.endpoint)
        monkeypatch.setenv("SDPANEL_WEBUI_PACKAGE_URL", env["url"])
        ctl.install({"webui": "comfyui", "extensions": False})
        wait_for(lambda: status(panel).get("state") == "installed" and not status(panel)["busy"], what="installed")
    text = panel.launch_log["text"]
    assert f"[install] prebuilt package ComfyUI.zip ({hf.endpoint}) failed: Download of comfyui failed: HTTP 404" in text
    assert f"[install] installed from {env['url']} (package" in text


def test_update_and_switch_from_the_tab(env: dict[str, Any], tmp_path: Path) -> None:
    import subprocess

    from tests.fixtures.webui_packages import stub_repo

    panel, ctl = env["panel"], env["ctl"]
    repo, first = stub_repo(tmp_path / "repo")
    ctl.install({"webui": "comfyui", "source": f"file://{repo}#main", "extensions": False})
    wait_for(lambda: status(panel).get("state") == "installed" and not status(panel)["busy"], what="installed")
    assert status(panel)["version"] == f"{first[:12]} (main)"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    (repo / "requirements.txt").write_text("# v2\n")
    subprocess.run([*git, "commit", "-qam", "v2"], check=True)
    second = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    ctl.update({"webui": "comfyui"})
    wait_for(lambda: status(panel)["version"].startswith(second[:12]) and not status(panel)["busy"], what="updated")
    assert f"[update] comfyui: {first[:12]} -> {second[:12]} (main)" in panel.launch_log["text"]
    with pytest.raises(ValueError, match="Type the tag, branch or commit"):
        ctl.update({"webui": "comfyui", "ref": " "}, switch=True)
    ctl.update({"webui": "comfyui", "ref": "no-such-tag"}, switch=True)
    wait_for(lambda: status(panel)["error"] and not status(panel)["busy"], what="switch refused")
    assert status(panel)["error"].startswith("Switch failed: git could not fetch 'no-such-tag' from origin")
    assert status(panel)["retry"] == "launch.switch" and status(panel)["version"].startswith(second[:12])
