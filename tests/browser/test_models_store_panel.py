"""The Models tab's store-aware controls in a real JupyterLab: a selection the store has is
held back with "Link instead" (and linked), Updates lists installed models that have a newer
version, the details offer "Download all versions" and "Hide @creator", and the hidden
count shows in the status line — light, dark and in the 250 px sidebar."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fixtures.civitai_server import CivitAIServer

from .lab import LabServer, screenshot, set_theme
from .test_models_panel import civitai, show_models

__all__ = ["civitai"]  # the module's CivitAI server fixture
pytestmark = pytest.mark.browser


def _ready(page: Any) -> None:
    page.wait_for_function(
        """() => { const r = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-md');
                   return r && r.dataset.status === 'ready'; }""")


def test_store_aware_models_tab(page: Any, lab_server: LabServer, civitai: CivitAIServer) -> None:
    store = lab_server.storage
    for left in store.glob("checkpoints/DreamyRealism_v2*"):  # another test's download of v2
        left.unlink()
    pony = civitai.model(1003)["modelVersions"][0]["files"][0]
    (store / "loras").mkdir(parents=True, exist_ok=True)
    (store / "loras" / "my-pony-style.safetensors").write_bytes(civitai.payload(pony["id"]))
    old = civitai.model(1001)["modelVersions"][1]
    ckpt = store / "checkpoints" / old["files"][0]["name"]
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_bytes(civitai.payload(old["files"][0]["id"]))
    ckpt.with_suffix(".civitai.json").write_text(json.dumps(
        {"source": "civitai", "model_id": 1001, "version_id": old["id"], "file_id": old["files"][0]["id"]}))

    page.set_viewport_size({"width": 1400, "height": 1000})
    root = show_models(page, lab_server, civitai, "models-store.ipynb")

    # Select what the store already has (under another name) and press Download.
    root.locator(".sdp-md-subtab[data-sub='loras']").click()
    root.locator(".sdp-md-q").fill("pony")
    root.locator(".sdp-md-q").press("Enter")
    card = root.locator(".sdp-md-card", has_text="Pony Style Pack")
    card.wait_for()
    card.locator(".sdp-md-check").check()
    root.locator(".sdp-md-download").click()
    have = root.locator(".sdp-md-have")
    have.wait_for()
    assert "loras/my-pony-style.safetensors" in have.inner_text() and "same sha256" in have.inner_text()
    screenshot(root, "models-already-in-store.png")
    set_theme(page, "JupyterLab Dark")
    try:
        screenshot(root, "models-already-in-store-dark.png")
    finally:
        set_theme(page, "JupyterLab Light")
    have.locator(".sdp-md-link").click()
    root.locator(".sdp-md-ok", has_text="Linked 1 file").wait_for()
    assert (store / "loras" / pony["name"]).samefile(store / "loras" / "my-pony-style.safetensors")
    assert not civitai.requests_to("/storage/"), "nothing was downloaded"

    # Updates: the installed v1 of Dreamy Realism has a v2.
    root.locator(".sdp-md-updates").click()
    update = root.locator(".sdp-md-card", has_text="Dreamy Realism")
    update.wait_for()
    assert update.locator(".sdp-md-update").inner_text() == "Update"
    assert root.locator(".sdp-md-card").count() == 1
    assert "have a newer version" in root.locator(".sdp-md-status").inner_text()
    screenshot(root, "models-updates.png")

    # Details: every version by preference, hide the creator.
    update.click()
    details = root.locator(".sdp-md-details")
    details.locator(".sdp-md-allv").wait_for()
    assert details.locator(".sdp-md-allv").inner_text() == "Download all 2 versions"
    screenshot(root, "models-details-actions.png")
    details.locator(".sdp-md-hide", has_text="Hide @alice").click()
    _ready(page)
    root.locator(".sdp-md-hidden").wait_for()
    assert root.locator(".sdp-md-hidden").inner_text().startswith("1 hidden")
    root.locator(".sdp-md-card", has_text="Dreamy Realism").wait_for(state="detached")  # searched again
    assert json.loads((store / ".sdpanel" / "models-hidden.json").read_text())["creators"] == ["alice"]

    # The 250 px sidebar view of the same panel.
    page.evaluate("() => window.jupyterapp.shell.activateById('sdpanel-sidebar')")
    root.locator(".sdp-sidebar-btn").click()
    live = page.locator("#sdpanel-sidebar .sdpanel-live-host .sdpanel-root")
    live.wait_for(state="visible")
    width = live.evaluate("e => e.getBoundingClientRect().width")
    live.locator(".sdp-md-hidden").wait_for()
    screenshot(live, "models-store-sidebar.png")
    set_theme(page, "JupyterLab Dark")
    try:
        screenshot(live, "models-store-sidebar-dark.png")
    finally:
        set_theme(page, "JupyterLab Light")
    assert width <= 300, width
    live.locator(".sdp-md-linkbtn").click()  # show hidden again
    page.wait_for_function("() => !document.querySelector('#sdpanel-sidebar .sdp-md-hidden')")
    assert not [m for m in page.sdp_console if m.startswith("error")], page.sdp_console
