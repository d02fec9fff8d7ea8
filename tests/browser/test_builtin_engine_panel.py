"""The Generate tab and the sidebar with no WebUI at all, in a real JupyterLab + Chromium:
the notice says jobs run on the built-in engine, and an image comes back from its worker
(real diffusers on CPU, random-weight SD1.5 in the lab's store). Light and dark, full
width and the 250 px sidebar."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("diffusers", reason="the built-in engine needs sdpanel[engine]")

from sdpanel.storage import StorageRoot  # noqa: E402
from tests.fixtures.sd15_checkpoint import place, sd15_checkpoint  # noqa: E402

from .lab import (  # noqa: E402
    CURRENT_NOTEBOOK,
    LabServer,
    cell_errors,
    open_lab,
    open_notebook,
    open_sidebar,
    run_all_cells,
    screenshot,
    set_theme,
    write_notebook,
)
from .test_generate_panel import _fill  # noqa: E402

pytestmark = pytest.mark.browser
CKPT = "sd15-random.safetensors"
NOTICE = "No WebUI is running: jobs run on the built-in engine"


@pytest.fixture
def engine_store(lab_server: LabServer) -> Iterator[StorageRoot]:
    store = StorageRoot.at(lab_server.storage).ensure()
    existing = {p for p in lab_server.storage.rglob("*") if p.is_file()}
    place(sd15_checkpoint(), store.kind_dir("checkpoints") / CKPT)
    yield store
    lab_server.shutdown_kernels()  # the kernel's worker ends with its stdin
    for added in [p for p in lab_server.storage.rglob("*") if p.is_file() and p not in existing]:
        added.unlink(missing_ok=True)


def test_generate_tab_runs_on_the_builtin_engine(page: Any, lab_server: LabServer,
                                                 engine_store: StorageRoot) -> None:
    write_notebook(lab_server.root_dir / "builtin.ipynb", [
        "from sdpanel.panels import Panel\np = Panel()\np.active_tab = 'generate'\np"])
    page.set_viewport_size({"width": 1400, "height": 1500})
    open_notebook(page, lab_server, "builtin.ipynb")
    run_all_cells(page)
    root = page.locator(f"{CURRENT_NOTEBOOK} .sdpanel-root").first
    gen = root.locator(".sdp-gen")
    try:
        gen.locator(f"[data-field='checkpoint'] option[value='{CKPT}']").wait_for(state="attached", timeout=60_000)
    except Exception:
        raise AssertionError(f"Generate tab did not load: {cell_errors(page)}; {page.sdp_console}") from None
    assert NOTICE in gen.locator(".sdp-gen-note").first.inner_text()
    # The lab's store is shared by the browser suite: other tests leave fake checkpoints
    # there, listed before ours.
    gen.locator("[data-field='checkpoint'] select").select_option(CKPT)
    _fill(gen, "prompt", "a lighthouse on a cliff at dusk")
    for field, value in (("steps", "2"), ("width", "64"), ("height", "64"), ("seed", "9")):
        _fill(gen, field, value)
    go = gen.locator("[data-act='generate']")
    go.click()
    # The pointer stays on the button after the click: its white label must keep its
    # coloured background (the shared hover once painted it pale, label invisible in light).
    go.hover()
    assert "gradient" in go.evaluate("b => getComputedStyle(b).backgroundImage")
    card = gen.locator(".sdp-gen-card").first
    card.locator("img").wait_for(state="visible", timeout=600_000)
    assert "seed 9" in card.locator(".sdp-gen-cmeta").inner_text()
    screenshot(root, "generate-builtin-light.png")
    set_theme(page, "JupyterLab Dark")
    try:
        screenshot(root, "generate-builtin-dark.png")
    finally:
        set_theme(page, "JupyterLab Light")


def test_sidebar_runs_on_the_builtin_engine(page: Any, lab_server: LabServer, engine_store: StorageRoot) -> None:
    lab_server.shutdown_kernels()
    page.set_viewport_size({"width": 1400, "height": 1600})
    open_lab(page, lab_server)
    set_theme(page, "JupyterLab Dark")
    try:
        panel = open_sidebar(page)  # JupyterLab's default sidebar width, 250 px
        side = panel.locator("[data-view='sidebar-generate']")
        side.scroll_into_view_if_needed()
        side.locator(f"[data-field='checkpoint'] option[value='{CKPT}']").wait_for(state="attached")
        assert NOTICE in side.locator(".sdp-gen-note").first.inner_text()
        side.locator("[data-field='checkpoint'] select").select_option(CKPT)  # the store is shared
        _fill(side, "prompt", "a paper boat on a pond")
        for field, value in (("steps", "2"), ("width", "64"), ("height", "64")):
            _fill(side, field, value)
        side.locator("[data-act='generate']").click()
        side.locator(".sdp-gen-card img").first.wait_for(state="visible", timeout=600_000)
        assert lab_server.api("api/kernels") == []  # the server's own worker, no kernel
        jobs = lab_server.api("sdpanel/api/jobs?state=succeeded")["jobs"]
        assert any(j["backend"] == "builtin" for j in jobs)
        side.scroll_into_view_if_needed()
        screenshot(panel, "sidebar-builtin-dark.png")
    finally:
        set_theme(page, "JupyterLab Light")
