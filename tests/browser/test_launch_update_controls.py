"""The Launch tab's Update and Switch controls, on the built widget against an in-page model
(the full install-to-ready flow in JupyterLab is test_launch_panel.py): what is installed
shows beside the state, Update sends ``launch.update``, Switch stays off until a tag, branch
or commit is typed and then sends ``launch.switch`` with it; both are off while it runs.
Screenshots: dark and light, full width and the 250 px sidebar."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .lab import REPO, ensure_built, screenshot
from .test_widget_plain import HARNESS

pytestmark = pytest.mark.browser

LIGHT = ("--jp-layout-color1:#ffffff;--jp-layout-color2:#f3f3f3;--jp-layout-color3:#e4e4e4;"
         "--jp-ui-font-color0:#1b1b1b;--jp-ui-font-color2:#5f6368;--jp-border-color2:#d6d6d6;"
         "--jp-brand-color1:#1976d2")


def _status(**over: Any) -> dict[str, Any]:
    return {"state": "installed", "installed": True, "port": None, "pid": None, "url": None, "exit_code": None,
            "message": "", "tail": [], "tunnels": [], "progress": None, "busy": "", "error": "", "retry": "",
            "restarting": False,
            "version": "2f1b6c0a9d3e (master) · venv python31312-venv-torch2100-cu130-ComfyUI.tar.lz4", **over}


STATE = {
    "platform": {"name": "colab", "label": "Google Colab", "reach": "tunnel"},
    "system": {"gpu": {"available": False, "devices": []}, "cpu": {"percent": 3.0}},
    "tabs": [{"id": "launch", "label": "Launch"}], "active_tab": "launch", "in_sidebar": False,
    "launch_webuis": {"webuis": [{"id": "comfyui", "label": "ComfyUI"}, {"id": "forge-neo", "label": "Forge Neo"}],
                      "tunnels": ["cloudflared"], "proxy": False,
                      "defaults": {"gpu": 0, "args": "", "tunnels": []}},
    "launch_webui": "comfyui",
    "launch_status": {"comfyui": _status()},
    "launch_log": {"webui": "comfyui", "lines": 3, "text": (
        "[install] prebuilt package ComfyUI.zip (https://huggingface.co) failed: HTTP 404; trying the next source\n"
        "[update] comfyui: 1a2b3c4d5e6f -> 2f1b6c0a9d3e (master), local changes kept in extra_model_paths.yaml\n"
        "[update] ComfyUI-Manager: already at 9c8b7a6f5e4d")},
}


def _open(page: Any, *, light: bool, sidebar: bool) -> Any:
    ensure_built()
    page.set_content("<!doctype html><html><head></head><body></body></html>")
    if light:
        page.evaluate(f"() => {{ document.documentElement.style.cssText = {LIGHT!r}; }}")
    page.evaluate(HARNESS, [(REPO / "sdpanel/static/app.js").read_text(),
                            (REPO / "sdpanel/static/app.css").read_text(), json.loads(json.dumps(STATE))])
    root = page.locator(".sdpanel-root")
    root.wait_for()
    if light:
        page.evaluate("() => { document.body.style.background = '#ffffff'; }")
    if sidebar:
        page.evaluate("() => { const r = document.querySelector('.sdpanel-root');"
                      " r.classList.replace('sdp-cell', 'sdp-sidebar'); r.parentElement.style.width = '250px'; }")
    return root


def test_update_and_switch_controls(page: Any) -> None:
    page.set_viewport_size({"width": 1100, "height": 900})
    root = _open(page, light=False, sidebar=False)
    assert "2f1b6c0a9d3e (master) · venv python31312" in root.locator(".sdp-la-proc").inner_text()
    update, switch = root.locator("button[data-act='update']"), root.locator("button[data-act='switch']")
    assert update.is_enabled() and not switch.is_enabled()
    update.click()
    sent = page.evaluate("() => window.sdpModel.sent")
    assert sent[-1]["action"] == "launch.update" and sent[-1]["webui"] == "comfyui"
    root.locator("input[data-field='ref']").fill("v0.3.64")
    assert switch.is_enabled()
    switch.click()
    sent = page.evaluate("() => window.sdpModel.sent")
    assert (sent[-1]["action"], sent[-1]["ref"]) == ("launch.switch", "v0.3.64")
    screenshot(root, "launch-update-dark.png")
    # While it runs (or while an update runs) neither can be pressed.
    page.evaluate("() => window.sdpModel.set('launch_status', {comfyui: " + json.dumps(_status(state="ready", pid=41, port=8188)) + "})")
    assert not update.is_enabled() and not switch.is_enabled()
    page.evaluate("() => window.sdpModel.set('launch_status', {comfyui: " + json.dumps(_status(busy="switching")) + "})")
    assert not update.is_enabled() and not switch.is_enabled()
    assert root.locator(".sdp-la-busy").inner_text() == "switching…"

    root = _open(page, light=True, sidebar=False)
    root.locator("input[data-field='ref']").fill("v0.3.64")
    screenshot(root, "launch-update-light.png")
    for light, name in ((False, "dark"), (True, "light")):
        root = _open(page, light=light, sidebar=True)
        assert root.locator("button[data-act='switch']").bounding_box()["width"] > 30  # type: ignore[index]
        screenshot(root, f"launch-update-sidebar-{name}.png")
    assert not [m for m in page.sdp_console if m.startswith("error")], page.sdp_console
