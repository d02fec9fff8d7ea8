"""The widget ESM outside JupyterLab (as in Colab or classic Notebook): no --jp-* theme
variables, no sidebar extension. It must fall back to its own dark look and hide the
sidebar button. Runs the built app.js against a minimal in-page model."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .lab import REPO, ensure_built, screenshot

pytestmark = pytest.mark.browser

STATE = {
    "platform": {"name": "colab", "label": "Google Colab", "reach": "tunnel"},
    "system": {
        "gpu": {"available": True, "devices": [{"index": 0, "name": "Tesla T4", "utilization": 37,
                                                "vram_used": 3_400_000_000, "vram_total": 15_800_000_000,
                                                "temperature": 61}]},
        "cpu": {"percent": 12.0}, "ram": {"total": 13_600_000_000, "used": 4_100_000_000},
        "disk": {"total": 235_000_000_000, "free": 81_000_000_000},
    },
    "tabs": [{"id": "settings", "label": "Settings"}, {"id": "not-built-yet", "label": "Ghost"}],
    "active_tab": "",
    "in_sidebar": False,
    "settings": {"webui": "comfyui", "tunnel": "cloudflared", "CIVITAI_TOKEN": "set (panel)"},
    "settings_fields": [{"key": "webui", "label": "WebUI", "kind": "choice",
                         "choices": ["comfyui", "forge"], "help": "WebUI to install and launch"}],
}

HARNESS = """
async ([code, css, state]) => {
  const style = document.createElement('style'); style.textContent = css; document.head.append(style);
  document.body.style.cssText = 'margin:0;padding:24px;background:#0f1115';
  const handlers = {};
  const model = {
    state, sent: [],
    get: k => model.state[k],
    set: (k, v) => { model.state[k] = v; (handlers['change:' + k] || []).forEach(f => f(null, v)); },
    on: (e, f) => { (handlers[e] = handlers[e] || []).push(f); },
    off: (e, f) => { handlers[e] = (handlers[e] || []).filter(g => g !== f); },
    save_changes: () => {}, send: m => model.sent.push(m), widget_manager: {},
  };
  window.sdpModel = model;
  const url = URL.createObjectURL(new Blob([code], {type: 'text/javascript'}));
  const mod = (await import(url)).default;
  await mod.initialize({model});
  const el = document.createElement('div'); el.style.maxWidth = '1000px'; document.body.append(el);
  await mod.render({model, el});
}
"""


def test_widget_outside_jupyterlab(page: Any) -> None:
    ensure_built()
    code = (REPO / "sdpanel/static/app.js").read_text()
    css = (REPO / "sdpanel/static/app.css").read_text()
    page.set_content("<!doctype html><html><head></head><body></body></html>")
    page.evaluate(HARNESS, [code, css, json.loads(json.dumps(STATE))])
    root = page.locator(".sdpanel-root")
    root.wait_for()
    assert root.locator(".sdp-platform").inner_text() == "Google Colab"
    chips = root.locator(".sdp-chips").inner_text()
    assert "Tesla T4" in chips and "37%" in chips and "75.4 GiB free" in chips
    # A tab whose front end is not built is not shown; no sidebar button without the extension.
    assert root.locator(".sdp-tab").all_inner_texts() == ["Settings"]
    assert root.locator(".sdp-sidebar-btn").is_hidden()
    # Our dark fallback applies when no JupyterLab theme is present.
    bg = root.evaluate("el => getComputedStyle(el).backgroundColor")
    assert bg == "rgb(21, 23, 30)"
    # A choice becomes an intent message for Python, not a local state change.
    root.locator("select[data-key='webui']").select_option("forge")
    assert page.evaluate("() => window.sdpModel.sent") == [{"action": "settings.set", "key": "webui", "value": "forge"}]
    # Header updates live from the system trait.
    page.evaluate("() => window.sdpModel.set('system', {gpu: {available: false, reason: 'no NVIDIA GPU found (pynvml: NVMLError)', devices: []}, cpu: {percent: 55}})")
    assert "no NVIDIA GPU" in root.locator(".sdp-chips").inner_text()
    page.evaluate("() => window.sdpModel.set('system', " + json.dumps(STATE["system"]) + ")")
    screenshot(root, "panel-plain.png")
