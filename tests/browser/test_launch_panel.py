"""The Launch tab in a real JupyterLab, from install to ready to stop: notebook cell 4
(``sdpanel.cells.launch()``) shows the Panel on its Launch tab; the user points "Install from"
at a stub WebUI package served (throttled) by the local range server, installs it (progress
shows), starts it with a public tunnel (stub cloudflared), sees it ready with a live log,
working links (local, Jupyter proxy, tunnel) and the tunnel's password once, then stops it."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.range_server import RangeServer
from tests.fixtures.stub_tunnels import install_stub_tools
from tests.fixtures.webui_packages import build_tree, make_zip

from .lab import (
    CURRENT_NOTEBOOK,
    LabServer,
    cell_errors,
    free_port,
    open_notebook,
    open_sidebar,
    run_all_cells,
    screenshot,
    set_theme,
    write_notebook,
)

pytestmark = pytest.mark.browser

PACKAGE_BYTES = 6 * 1024 * 1024  # filler, so the throttled install shows its progress


def kernel_output(page: Any, code: str) -> str:
    """Run ``code`` in the notebook's kernel (no new cell) and return its stdout."""
    return str(page.evaluate("""async (code) => {
      const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
      const fut = k.requestExecute({ code, store_history: false });
      let out = "";
      fut.onIOPub = (msg) => { if (msg.header.msg_type === "stream") out += msg.content.text; };
      await fut.done;
      return out;
    }""", code))


@pytest.fixture
def webuis_dir(lab_server: LabServer, tmp_path: Path) -> Iterator[Path]:
    """Where the kernel installs WebUIs; whatever the test leaves running (it started
    detached, so the kernel's end does not stop it) is stopped afterwards."""
    from sdpanel.runtime import EventBus, get_runtime
    from sdpanel.storage import StorageRoot
    from sdpanel.webuis import WebUIService

    path = tmp_path / "webuis"
    yield path
    svc = WebUIService(StorageRoot.at(lab_server.storage), EventBus(), webuis_dir=path)
    # Playwright's sync API owns this thread's event loop: stop it on the runtime's.
    get_runtime().submit(svc.stop("comfyui")).wait(60)


def test_launch_panel_install_start_ready_stop(page: Any, lab_server: LabServer, tmp_path: Path,
                                               webuis_dir: Path) -> None:
    tree = build_tree(tmp_path / "tree", filler=PACKAGE_BYTES)
    pkg = make_zip(tree, tmp_path / "ComfyUI-portable.zip", level=0)
    bin_dir = install_stub_tools(tmp_path / "bin")
    webuis = webuis_dir
    setup = (
        "import os\n"
        "# Test overrides: WebUIs go to a temp dir, stub tunnel tools come first on PATH.\n"
        f"os.environ['SDPANEL_WEBUIS_DIR'] = {str(webuis)!r}\n"
        "os.environ['STUB_WEBUI_DELAY'] = '1.0'\n"
        "# A port of its own: other suites start stub WebUIs from the registry's 8188 upwards, and\n"
        "# one of theirs taking our port between spawn and probe would answer our readiness probe.\n"
        f"os.environ['SDPANEL_WEBUI_PORT'] = '{free_port()}'\n"
        f"os.environ['PATH'] = {str(bin_dir)!r} + os.pathsep + os.environ['PATH']"
    )
    write_notebook(lab_server.root_dir / "launch.ipynb", [setup, "import sdpanel.cells\nsdpanel.cells.launch()"])
    page.set_viewport_size({"width": 1280, "height": 1500})
    with RangeServer(rate=3 * 1024 * 1024) as srv:
        srv.add_file(pkg.name, pkg)
        open_notebook(page, lab_server, "launch.ipynb")
        run_all_cells(page)
        root = page.locator(f"{CURRENT_NOTEBOOK} .sdpanel-root").first
        try:
            root.locator(".sdp-la-badge").wait_for(state="visible", timeout=60_000)
        except Exception:
            raise AssertionError(f"Launch tab did not render. Cell errors: {cell_errors(page)}; "
                                 f"console: {page.sdp_console}") from None
        # Cell 4 opens the Panel on its Launch tab, on the settings' WebUI, nothing started.
        assert root.locator(".sdp-tab.sdp-active").inner_text() == "Launch"
        assert root.locator("select[data-field='webui']").input_value() == "comfyui"
        badge = root.locator(".sdp-la-badge")
        page.wait_for_function(
            "() => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-la-badge').dataset.state === 'not_installed'")
        buttons = {v: root.locator(f"button[data-act='{v}']") for v in ("install", "start", "stop", "restart")}
        assert buttons["install"].is_enabled() and not buttons["start"].is_enabled()
        assert not buttons["stop"].is_enabled() and not buttons["restart"].is_enabled()
        # No GPU on this machine: the picker says so and the meter says CPU.
        gpu_options = root.locator("select[data-field='gpu'] option").all_inner_texts()
        assert gpu_options[-1].startswith("CPU only")

        root.locator("input[data-field='source']").fill(srv.url(pkg.name))
        root.locator("input[data-field='extensions']").uncheck()  # ComfyUI-Manager is on GitHub
        root.locator("label[data-tunnel='cloudflared'] input").check()
        buttons["install"].click()
        # Installing: the badge and a progress bar fed by the streamed download.
        page.wait_for_function(
            "() => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-la-badge').dataset.state === 'installing'")
        root.locator(".sdp-la-progress-text").filter(has_text="MiB").wait_for(timeout=30_000)
        screenshot(root, "launch-installing.png")
        page.wait_for_function(
            "() => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-la-badge').dataset.state === 'installed'",
            timeout=120_000)
    assert (webuis / "comfyui" / "main.py").is_file()
    root.locator("button[data-act='start']:not([disabled])").wait_for(timeout=30_000)  # install job done
    assert buttons["start"].is_enabled() and buttons["install"].inner_text() == "Reinstall"
    screenshot(root, "launch-panel.png")

    buttons["start"].click()
    page.wait_for_function(
        "() => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-la-badge').dataset.state === 'ready'",
        timeout=120_000)
    assert badge.inner_text().lower().startswith("ready")
    # The live log tail shows the WebUI's own lines.
    root.locator(".sdp-la-log").filter(has_text="To see the GUI go to").wait_for(timeout=30_000)
    # The local link answers (the stub's ComfyUI API).
    local = root.locator("[data-link='local'] a").get_attribute("href")
    assert local and local.startswith("http://127.0.0.1:")
    port = int(local.rsplit(":", 1)[1].strip("/"))
    with urllib.request.urlopen(f"{local}/system_stats", timeout=10) as r:
        assert r.status == 200 and "system" in json.loads(r.read())
    # Jupyter proxy link, built in the browser from the server's base URL.
    proxied = root.locator("[data-link='jupyter'] a").get_attribute("href")
    assert proxied == f"{lab_server.url}proxy/{port}/"
    # The tunnel: its public URL, and its password once, with a copy button.
    tunnel = root.locator("[data-link='tunnel-cloudflared'] a")
    tunnel.wait_for(timeout=60_000)
    assert tunnel.get_attribute("href").endswith(".trycloudflare.com")
    secret = root.locator("[data-secret='cloudflared']")
    secret.wait_for(timeout=30_000)
    password = secret.inner_text().strip()
    assert len(password) >= 12
    assert root.locator(".sdp-la-login button[data-copy='password']").count() == 1
    assert root.locator("[data-link='local'] button[data-copy]").count() == 1
    # The password is in no synced trait of the kernel's Panel (what a saved notebook keeps).
    traits = kernel_output(page, "import json, sdpanel.panels as P\n"
                                 "p = P.Panel()\nprint(json.dumps({k: getattr(p, k) for k in p.keys}, default=str))")
    assert '"launch_status"' in traits and "trycloudflare.com" in traits
    assert password not in traits
    root.scroll_into_view_if_needed()
    screenshot(root, "launch-ready.png")
    set_theme(page, "JupyterLab Dark")
    try:
        screenshot(root, "launch-ready-dark.png")
    finally:
        set_theme(page, "JupyterLab Light")

    # The same live view fits JupyterLab's narrow sidebar.
    kernel_output(page, "import sdpanel.panels\nsdpanel.panels.Panel().show_in_sidebar()")
    side = open_sidebar(page).locator(".sdpanel-root").first
    side.locator(".sdp-la-badge[data-state='ready']").wait_for(timeout=30_000)
    screenshot(page.locator("#sdpanel-sidebar"), "launch-sidebar.png")

    buttons["stop"].click()
    page.wait_for_function(
        "() => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-la-badge').dataset.state === 'stopped'",
        timeout=60_000)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{local}/system_stats", timeout=3)
    assert buttons["start"].is_enabled() and not buttons["stop"].is_enabled()
    assert root.locator("[data-link='local']").count() == 0

    # A WebUI that crashes at start: the badge says so with its exit code, the last lines show.
    kernel_output(page, "import os\nos.environ['STUB_WEBUI_CRASH'] = '1'")
    buttons["start"].click()
    try:
        page.wait_for_function(
            "() => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-la-badge').dataset.state === 'crashed'"
            " && !document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-la-busy').textContent"
            " && !document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-la-error').hidden",
            timeout=90_000)
    except Exception:
        kernel = kernel_output(page, "import json, sdpanel.panels as P\nprint(json.dumps(P.Panel().launch_status.get('comfyui')))")
        raise AssertionError(f"no final crash shown; kernel status: {kernel}; "
                             f"badge {badge.inner_text()!r}, error {root.locator('.sdp-la-error').inner_text()!r}") from None
    assert badge.inner_text().lower() == "crashed (exit 3)"
    crash = root.locator(".sdp-la-crash")
    assert crash.locator(".sdp-la-crash-head").inner_text().startswith("comfyui crashed 3 times in a row (last exit code 3)")
    assert "exited with code 3" in root.locator(".sdp-la-error").inner_text()
    assert "RuntimeError" in crash.locator("pre").inner_text()
    error = root.locator(".sdp-la-error")
    assert error.is_visible() and error.locator("button[data-act='retry']").count() == 1
    assert buttons["start"].is_enabled() and not buttons["stop"].is_enabled()
    screenshot(root, "launch-crashed.png")
    assert not [m for m in page.sdp_console if m.startswith("error")], page.sdp_console
