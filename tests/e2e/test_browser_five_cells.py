"""The promise in a real JupyterLab (Debian Chromium): open notebook/SDPanel.ipynb, run the
five cells one by one, pick a model in the Panel's Models tab (local CivitAI server), watch
it finish on the Downloads tab, install and start the stub WebUI from the Launch tab, open
the link. Every cell's output is screenshotted (tests/artifacts/screenshots/e2e-cell<N>.png)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.lab import (
    CURRENT_NOTEBOOK,
    LabServer,
    cell_errors,
    copy_notebook_dir,
    open_notebook,
    run_cells,
    screenshot,
    start_lab,
)

from ._harness import Servers, http_get, local_servers, stop_started

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ACTIVE_PANEL = f"{CURRENT_NOTEBOOK} .sdpanel-root"


@pytest.fixture(scope="module")
def e2e_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with local_servers(tmp_path_factory.mktemp("servers"), package_rate=4 * 1024 * 1024) as srv:
        yield srv


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    """Chromium through Playwright for this module only. ``make test`` runs tests/e2e in the
    pytest process without tests/browser, and Playwright's sync API leaves the main thread's
    event loop marked running while it is open: closed at the module's end, the asyncio
    tests that follow in the same process are unaffected."""
    from tests.browser.conftest import _missing

    why = _missing()
    if why:
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    from tests.browser.lab import launch_browser

    with sync_playwright() as pw:
        browser = launch_browser(pw)
        context = browser.new_context(viewport={"width": 1280, "height": 1100})
        pg = context.new_page()
        pg.sdp_console = []
        pg.on("console", lambda m: pg.sdp_console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        pg.set_default_timeout(30_000)
        try:
            yield pg
        finally:
            context.close()
            browser.close()


@pytest.fixture
def lab(tmp_path: Path, e2e_servers: Servers) -> Iterator[LabServer]:
    """A JupyterLab whose kernels talk to the local servers only."""
    from tests.browser.conftest import _missing

    why = _missing()
    if why:
        pytest.skip(why)
    root = copy_notebook_dir(tmp_path / "root")
    env = {
        "SDPANEL_PLATFORM": "local",
        "SDPANEL_CIVITAI_BASE_URL": e2e_servers.civitai.base_url,
        "SDPANEL_HF_BASE_URL": e2e_servers.hf.endpoint,
        "SDPANEL_WEBUIS_DIR": str(tmp_path / "webuis"),
        "STUB_WEBUI_DELAY": "0.5",
        "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
        "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost",
    }
    server = start_lab(tmp_path, root, extra_env=env)
    try:
        yield server
    finally:
        server.stop()
        stop_started(server.storage)


def cell(page: Any, index: int) -> Any:
    return page.locator(f"{CURRENT_NOTEBOOK} .jp-Cell").nth(index)


def shoot_output(page: Any, index: int, name: str | None = None) -> Path:
    out = cell(page, index).locator(".jp-Cell-outputWrapper")
    out.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    return screenshot(out, name or f"e2e-cell{index + 1}.png")


def points_at_panel(page: Any, index: int, tab: str) -> None:
    """Cells 3-5 open their tab on the Panel cell 2 shows, with a one-line pointer."""
    pointer = cell(page, index).locator(".sdpanel-pointer")
    pointer.wait_for(timeout=60_000)
    assert f"its {tab} tab is open now" in pointer.inner_text()
    assert cell(page, index).locator(".sdpanel-root").count() == 0


def panel_in(page: Any, index: int) -> Any:
    root = cell(page, index).locator(".sdpanel-root").first
    try:
        root.wait_for(state="visible", timeout=60_000)
    except Exception:
        raise AssertionError(f"cell {index + 1} shows no Panel; errors: {cell_errors(page)}; "
                             f"console: {page.sdp_console}") from None
    return root


def wait_state(page: Any, index: int, selector: str, attr: str, value: str, timeout: float = 120_000) -> None:
    page.wait_for_function(
        """([i, sel, attr, value]) => {
             const c = window.jupyterapp.shell.currentWidget.content.widgets[i].node;
             const el = c.querySelector(sel);
             return !!el && el.dataset[attr] === value; }""",
        arg=[index, selector, attr, value], timeout=timeout)


def test_five_cells_in_the_browser(page: Any, lab: LabServer, e2e_servers: Servers) -> None:
    page.set_viewport_size({"width": 1280, "height": 1100})
    open_notebook(page, lab, "SDPanel.ipynb")

    # 1. Setup: a plain summary.
    run_cells(page, [0])
    text = cell(page, 0).locator(".jp-OutputArea").inner_text()
    assert "platform  local" in text and str(lab.storage) in text, (text, cell_errors(page))
    shoot_output(page, 0)

    # 2. Settings: the Panel; pick a model on its Models tab and send it to the queue.
    run_cells(page, [1])
    root = panel_in(page, 1)
    root.locator(".sdp-tab[data-tab='models']").click()
    card = root.locator(".sdp-md-card", has_text="Dreamy Realism").first
    card.wait_for(timeout=60_000)
    card.locator(".sdp-md-check").check()
    root.locator(".sdp-md-selbar").wait_for()
    shoot_output(page, 1)
    root.locator(".sdp-md-selbar .sdp-md-download").click()
    root.locator(".sdp-md-ok", has_text="Sent 1").wait_for(timeout=30_000)

    # 3. Download: the Downloads tab shows the file finishing.
    run_cells(page, [2])
    target = lab.storage / "checkpoints" / "DreamyRealism_v2.safetensors"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not target.is_file():
        time.sleep(0.3)
    assert target.is_file(), list(lab.storage.rglob("*.safetensors"))
    # The cell opens the Panel's Downloads tab, with the file picked on the Models tab.
    points_at_panel(page, 2, "Downloads")
    dl_root = root
    assert dl_root.locator(".sdp-tab.sdp-active").inner_text() == "Downloads"
    dl_root.locator(".sdp-dl-row", has_text="DreamyRealism").wait_for(timeout=30_000)
    page.wait_for_function(
        """i => { const c = window.jupyterapp.shell.currentWidget.content.widgets[i].node;
                  const s = c.querySelector('.sdp-dl-row .sdp-dl-state');
                  return !!s && /done/i.test(s.textContent || ''); }""",
        arg=1, timeout=60_000)
    shoot_output(page, 1, "e2e-cell3.png")

    # 4. Launch: install the stub WebUI from the local package, start it, open the link.
    run_cells(page, [3])
    points_at_panel(page, 3, "Launch")
    la = root
    la.locator(".sdp-la-badge").wait_for(timeout=60_000)
    la.locator("input[data-field='source']").fill(e2e_servers.package_urls["comfyui"])
    la.locator("input[data-field='extensions']").uncheck()  # ComfyUI-Manager lives on GitHub
    la.locator("button[data-act='install']").click()
    wait_state(page, 1, ".sdp-la-badge", "state", "installed")
    la.locator("button[data-act='start']:not([disabled])").wait_for(timeout=30_000)
    la.locator("button[data-act='start']").click()
    wait_state(page, 1, ".sdp-la-badge", "state", "ready")
    local = la.locator("[data-link='local'] a").get_attribute("href")
    assert local and local.startswith("http://127.0.0.1:")
    status, body = http_get(local)
    assert status == 200 and b"stub" in body
    seen = json.loads(http_get(local.rstrip("/") + "/models/checkpoints")[1])
    assert "DreamyRealism_v2.safetensors" in seen  # the WebUI sees the store through its links
    shoot_output(page, 1, "e2e-cell4.png")

    # 5. Storage: usage of the store, scanned now: the model, seen by ComfyUI.
    page.set_viewport_size({"width": 1280, "height": 1500})  # the whole tab in one picture
    run_cells(page, [4])
    points_at_panel(page, 4, "Storage")
    st = root
    assert st.locator(".sdp-tab.sdp-active").inner_text() == "Storage"
    row = st.locator("tr", has_text="DreamyRealism_v2.safetensors").first
    row.wait_for(timeout=30_000)
    assert "ComfyUI" in row.inner_text()
    shoot_output(page, 1, "e2e-cell5.png")
    assert not cell_errors(page), cell_errors(page)
    assert not [m for m in page.sdp_console if m.startswith("error")], page.sdp_console
