"""The Panel's Python side (traits, tab registry, sidebar flag, system feed, settings tab)
and the shape of the built front end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import traitlets

from sdpanel.panels import Panel, register_tab, registered_tabs, unregister_tab
from tests.fixtures.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
PLANTED = "sdp_test_tok_8d1f0c2a9e"


class FakeMonitor:
    def __init__(self) -> None:
        self.calls = 0

    def sample(self) -> dict[str, Any]:
        self.calls += 1
        return {"gpu": {"available": False, "reason": "no NVIDIA GPU found", "devices": []},
                "cpu": {"percent": float(self.calls)}, "ram": {"total": 8, "used": 4},
                "disk": {"total": 100, "free": 40, "used": 60}}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDPANEL_STORAGE", str(tmp_path / "storage"))
    monkeypatch.setenv("SDPANEL_PLATFORM", "local")


@pytest.fixture
def panel() -> Iterator[Panel]:
    p = Panel(monitor=FakeMonitor(), sample_interval=0.05)
    try:
        yield p
    finally:
        p.close()


def sent(p: Panel, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    monkeypatch.setattr(p, "send", lambda content, buffers=None: messages.append(content))
    return messages


def test_shell_traits_are_synced(panel: Panel) -> None:
    for name in ("platform", "system", "tabs", "active_tab", "in_sidebar", "settings", "settings_fields"):
        assert panel.trait_metadata(name, "sync"), name
    assert panel.platform["name"] == "local"
    # anywidget reads the built files (sdpanel/static/app.js, app.css) into the traits.
    assert "sdpanel-root" in str(panel._esm) and ".sdpanel-root" in str(panel._css)


def test_only_registered_tabs_are_listed(panel: Panel) -> None:
    # Exactly the registered tabs (features add theirs), Settings last; no placeholders.
    assert panel.tabs == [{"id": t.id, "label": t.label} for t in registered_tabs()]
    assert panel.tabs[-1] == {"id": "settings", "label": "Settings"}


def test_registered_tab_brings_traits_actions_and_attach() -> None:
    seen: list[Any] = []
    detached: list[bool] = []

    def attach(p: Panel) -> Any:
        p.demo_count = 5
        return lambda: detached.append(True)

    register_tab("demo", "Demo", traits={"demo_count": traitlets.Int(0)},
                 actions={"demo.bump": lambda p, msg: seen.append(msg)}, attach=attach, order=1)
    try:
        p = Panel(monitor=FakeMonitor())
        ids = [t["id"] for t in p.tabs]
        assert ids[0] == "demo" and ids[-1] == "settings"  # order: features first
        assert p.trait_metadata("demo_count", "sync") and p.demo_count == 5
        p._on_msg(p, {"action": "demo.bump", "n": 2}, [])
        assert seen == [{"n": 2}]
        p.close()
        assert detached == [True]
    finally:
        unregister_tab("demo")


def test_action_names_cannot_collide() -> None:
    with pytest.raises(ValueError, match="already handled by tab 'settings'"):
        register_tab("other", "Other", actions={"settings.set": lambda p, m: None})
    with pytest.raises(ValueError, match="must be letters"):
        register_tab("bad id!", "Bad")


def test_unknown_action_becomes_error_toast(panel: Panel, monkeypatch: pytest.MonkeyPatch) -> None:
    messages = sent(panel, monkeypatch)
    panel._on_msg(panel, {"action": "nope.nothing"}, [])
    assert messages and messages[0]["cue"] == "toast" and messages[0]["level"] == "error"
    assert "nope.nothing" in messages[0]["message"]


def test_shared_panel_and_sidebar_flag() -> None:
    a = Panel()
    try:
        assert Panel() is a  # two displays, one model
        assert a.in_sidebar is False
        assert a.show_in_sidebar() is None
        assert a.in_sidebar is True
    finally:
        a.close()
    b = Panel()
    try:
        assert b is not a  # a closed panel is not handed out again
    finally:
        b.close()


def test_publisher_feeds_system_trait(panel: Panel) -> None:
    assert wait_for(lambda: panel.system.get("cpu", {}).get("percent", 0) >= 2)
    assert panel.system["disk"]["free"] == 40


def test_settings_tab_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVITAI_TOKEN", PLANTED)
    p = Panel(monitor=FakeMonitor())
    try:
        blob = json.dumps(p.get_state())
        assert PLANTED not in blob
        assert p.settings["CIVITAI_TOKEN"].startswith("set")
        editable = {f["key"] for f in p.settings_fields if f["editable"]}
        assert editable == {"webui", "tunnel", "storage", "download_engine", "max_concurrent_downloads",
                            "connections_per_file", "nsfw", "audio_muted", "CIVITAI_TOKEN", "HF_TOKEN",
                            "NGROK_TOKEN", "ZROK_TOKEN"}
        webui = next(f for f in p.settings_fields if f["key"] == "webui")
        assert webui["kind"] == "choice" and "forge" in webui["choices"]
        assert webui["labels"]["forge"] == "Stable Diffusion WebUI Forge"
        assert all("_" not in f["label"] for f in p.settings_fields)
    finally:
        p.close()


def test_settings_change_goes_through_python(panel: Panel, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    messages = sent(panel, monkeypatch)
    panel._on_msg(panel, {"action": "settings.set", "key": "webui", "value": "forge"}, [])
    assert panel.settings["webui"] == "forge"
    saved = json.loads((tmp_path / "storage/.sdpanel/settings.json").read_text())
    assert saved["webui"] == "forge"
    assert saved["storage"] == ""  # the session's SDPANEL_STORAGE is not made sticky
    panel._on_msg(panel, {"action": "settings.set", "key": "webui", "value": "photoshop"}, [])
    assert panel.settings["webui"] == "forge"  # unchanged
    assert messages[-1]["level"] == "error" and "photoshop" in messages[-1]["message"]
    panel._on_msg(panel, {"action": "settings.set", "key": "civitai_base_url", "value": "http://x"}, [])
    assert "cannot be changed from the panel" in messages[-1]["message"]


# ---- built front end (npm run build) ------------------------------------------------------

def test_build_output_is_complete() -> None:
    static = REPO / "sdpanel" / "static"
    labext = REPO / "sdpanel" / "labextension"
    if not (labext / "package.json").is_file():
        pytest.fail("The front end is not built: run `npm ci && npm run build` in the checkout")
    assert (static / "app.js").stat().st_size > 1000
    assert ".sdpanel-root" in (static / "app.css").read_text()
    assert "export" in (static / "app.js").read_text()  # an ES module for anywidget
    pkg = json.loads((labext / "package.json").read_text())
    root_pkg = json.loads((REPO / "package.json").read_text())
    assert pkg["name"] == "sdpanel" and pkg["version"] == root_pkg["version"]
    build = pkg["jupyterlab"]["_build"]
    assert pkg["jupyterlab"]["extension"] is True and build["extension"] == "./extension"
    entry = labext / build["load"]
    assert entry.is_file() and entry.name.startswith("remoteEntry.")
    code = entry.read_text()
    assert "_JUPYTERLAB" in code and "sdpanel/api/status" in code
    # JupyterLab comes from the share scope, never bundled: the container stays small.
    assert len(code) < 100_000 and "@jupyterlab/application" in code
    assert len(list((labext / "static").glob("remoteEntry.*.js"))) == 1  # no stale entries
