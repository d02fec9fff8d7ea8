"""The Panel and the "SD" sidebar in a real JupyterLab, driven in Debian's Chromium."""

from __future__ import annotations

import json
from typing import Any

import psutil
import pytest

from .lab import (
    CURRENT_NOTEBOOK,
    LabServer,
    cell_errors,
    open_notebook,
    open_sidebar,
    run_all_cells,
    screenshot,
    set_theme,
    write_notebook,
)

pytestmark = pytest.mark.browser


def _show_panel(page: Any, lab_server: LabServer, name: str, extra: str = "") -> Any:
    write_notebook(lab_server.root_dir / name, ["from sdpanel.panels import Panel\np = Panel()" + extra + "\np"])
    open_notebook(page, lab_server, name)
    run_all_cells(page)
    root = page.locator(f"{CURRENT_NOTEBOOK} .sdpanel-root").first
    try:
        root.wait_for(state="visible", timeout=30_000)
    except Exception:
        raise AssertionError(f"Panel did not render. Cell errors: {cell_errors(page)}; console: {page.sdp_console}") from None
    return root


def test_panel_renders_in_notebook(page: Any, lab_server: LabServer, planted_tokens: dict[str, str]) -> None:
    root = _show_panel(page, lab_server, "panel.ipynb")
    # Header: platform label and the live system chips (CPU percent arrives from the publisher).
    assert root.locator(".sdp-platform").inner_text().strip() not in ("", "unknown platform")
    chips = root.locator(".sdp-chips")
    page.wait_for_function(
        "() => /CPU\\s*\\d+%/.test(document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-chips')?.innerText || '')")
    assert "Disk" in chips.inner_text() and "free" in chips.inner_text()
    # The header is live: the publisher pushes a new sample about once a second.
    first = chips.get_attribute("data-sample-time")
    page.wait_for_function(
        "t => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-chips')?.dataset.sampleTime !== t",
        arg=first, timeout=10_000)
    # Only registered tabs are shown, and the Settings tab shows resolved settings.
    tabs = root.locator(".sdp-tab").all_inner_texts()
    assert tabs[-1] == "Settings"
    root.locator(".sdp-tab", has_text="Settings").click()  # features may come first
    # Rows are labelled ("WebUI", "CivitAI token"), never raw keys.
    assert root.locator(".sdp-kv tr[data-key='webui'] th").inner_text() == "WebUI"
    assert root.locator(".sdp-kv").inner_text().count("CivitAI token") == 1
    assert "CIVITAI_TOKEN" not in root.locator(".sdp-kv").inner_text()
    # The kernel has every token set (planted): the page shows where, never the value.
    assert root.locator(".sdp-kv").inner_text().count("set (environment)") == len(planted_tokens)
    html = page.content()
    assert not [name for name, value in planted_tokens.items() if value in html]
    screenshot(page, "panel.png")
    screenshot(root, "panel-widget.png")
    # The look follows JupyterLab's theme through --jp-* variables.
    light_bg = root.evaluate("el => getComputedStyle(el).backgroundColor")
    set_theme(page, "JupyterLab Dark")
    try:
        page.wait_for_function(
            "bg => getComputedStyle(document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdpanel-root')).backgroundColor !== bg",
            arg=light_bg)
        screenshot(page, "panel-dark.png")
    finally:
        set_theme(page, "JupyterLab Light")


def test_settings_choice_goes_through_python(page: Any, lab_server: LabServer) -> None:
    root = _show_panel(page, lab_server, "settings.ipynb")
    root.locator(".sdp-tab", has_text="Settings").click()
    select = root.locator("select[data-key='webui']")
    select.select_option("forge")
    # The table is redrawn from the `settings` trait that Python sends back after saving.
    row = root.locator(".sdp-kv tr[data-key='webui']")
    page.wait_for_function(
        """() => document.querySelector(".jp-NotebookPanel:not(.lm-mod-hidden) .sdp-kv tr[data-key='webui'] td")
             ?.textContent === 'Stable Diffusion WebUI Forge'""")
    assert row.locator("th").inner_text() == "WebUI"
    saved = (lab_server.storage / ".sdpanel" / "settings.json").read_text()
    assert '"webui": "forge"' in saved


def test_sidebar_status_without_kernel(page: Any, lab_server: LabServer) -> None:
    from .lab import open_lab

    lab_server.shutdown_kernels()
    open_lab(page, lab_server)
    panel = open_sidebar(page)
    status = panel.locator(".sdp-status")
    status.locator(".sdp-status-storage").wait_for()
    text = status.inner_text()
    assert str(lab_server.storage) in text
    assert "Disk" in text and "free" in text
    assert "No sdpanel processes running." in text
    assert panel.locator(".sdp-platform").inner_text().strip() not in ("", "…")
    # No kernel was needed for any of this.
    assert lab_server.api("api/kernels") == []
    # A recorded sdpanel process (here: the lab server itself, alive) shows up on refresh.
    pids = lab_server.storage / ".sdpanel" / "pids"
    pids.mkdir(parents=True, exist_ok=True)
    record = pids / "comfyui.json"
    record.write_text(json.dumps({"pid": lab_server.proc.pid, "port": 8188,
                                  "started": psutil.Process(lab_server.proc.pid).create_time()}))
    try:
        status.locator(".sdp-proc", has_text="comfyui").wait_for(timeout=15_000)
        assert "port 8188" in status.locator(".sdp-proc").inner_text()
        screenshot(page, "sidebar.png")
    finally:
        record.unlink()


def test_show_in_sidebar_mounts_live_view(page: Any, lab_server: LabServer) -> None:
    root = _show_panel(page, lab_server, "sidebar-live.ipynb", "\np.show_in_sidebar()")
    live = page.locator("#sdpanel-sidebar .sdpanel-live-host .sdpanel-root")
    live.wait_for(state="visible")
    # It is the same model: a tab chosen in the sidebar view is chosen in the cell view too.
    labels = live.locator(".sdp-tab").all_inner_texts()
    assert labels == root.locator(".sdp-tab").all_inner_texts() and "Settings" in labels
    for label in reversed(labels):
        live.locator(".sdp-tab", has_text=label).click()
        page.wait_for_function(
            "l => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-tab.sdp-active')?.textContent === l",
            arg=label)
    page.wait_for_function(
        "() => /CPU\\s*\\d+%/.test(document.querySelector('#sdpanel-sidebar .sdpanel-live-host .sdp-chips')?.innerText || '')")
    cell_btn = page.locator(f"{CURRENT_NOTEBOOK} .sdp-sidebar-btn").first
    assert cell_btn.inner_text() == "In sidebar ✓"
    screenshot(page, "sidebar-live.png")
    # The cell view's button takes it out of the sidebar again (UI -> model -> both views).
    cell_btn.click()
    live.wait_for(state="detached")
    assert cell_btn.inner_text() == "Show in sidebar"
    # ...and the sidebar view's own Close button does the same.
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    live.wait_for(state="visible")
    live.locator(".sdp-sidebar-btn").click()
    live.wait_for(state="detached")
    page.wait_for_function(
        "() => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-sidebar-btn')?.textContent === 'Show in sidebar'")


def test_toast_from_python_shows_in_the_view(page: Any, lab_server: LabServer) -> None:
    """A one-off cue from Python (panel.toast) shows as a toast in the view and goes away
    on its own. Regression: toasts were keyed by the model object, which differs between
    anywidget's initialize() and render(), so none ever showed."""
    # The cue is sent from a timer thread a few seconds after the view exists.
    root = _show_panel(page, lab_server, "toast.ipynb", extra=(
        "\nimport threading\n"
        "threading.Timer(4, lambda: p.toast('hello from python', level='info')).start()"))
    toast = root.locator(".sdp-toast", has_text="hello from python")
    try:
        toast.wait_for(state="visible", timeout=15_000)
    except Exception:
        raise AssertionError(f"no toast; console: {page.sdp_console}; toasts: {page.locator('.sdp-toast').count()}; errors: {cell_errors(page)}") from None
    screenshot(root, "panel-toast.png")
    toast.wait_for(state="detached", timeout=15_000)
