"""The Generate panel in real JupyterLab + Chromium driving the REAL ComfyUI 0.3.64
(installed from a package zip through sdpanel into the lab's store, launched on CPU): the
notebook Panel's Generate tab lists the store's checkpoint, runs txt2img and shows the
image. Screenshots, light
and dark. One ComfyUI for the module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.comfy_env import have_comfyui_snapshot
from tests.fixtures.comfy_live import CKPT, Comfy, package_comfy

from .lab import (
    CURRENT_NOTEBOOK,
    LabServer,
    cell_errors,
    open_notebook,
    run_all_cells,
    screenshot,
    set_theme,
    write_notebook,
)

pytestmark = [pytest.mark.browser, pytest.mark.realwebui,
              pytest.mark.skipif(not have_comfyui_snapshot(), reason="no ComfyUI snapshot in ../shared/webuis")]


@pytest.fixture(scope="module")
def real_comfy(lab_server: LabServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Comfy]:
    with package_comfy(tmp_path_factory.mktemp("comfy-browser"), store=lab_server.storage) as c:
        yield c
    lab_server.shutdown_kernels()


def _fill(scope: Any, field: str, value: str) -> None:
    scope.locator(f"[data-field='{field}'] .sdp-input").first.fill(value)


def test_generate_tab_with_the_real_comfyui(page: Any, lab_server: LabServer, real_comfy: Comfy) -> None:
    write_notebook(lab_server.root_dir / "real-generate.ipynb", [
        "from sdpanel.panels import Panel\np = Panel()\np.active_tab = 'generate'\np"])
    page.set_viewport_size({"width": 1400, "height": 1500})
    open_notebook(page, lab_server, "real-generate.ipynb")
    run_all_cells(page)
    root = page.locator(f"{CURRENT_NOTEBOOK} .sdpanel-root").first
    try:
        root.locator(".sdp-gen").wait_for(state="visible", timeout=120_000)
        root.locator(f"[data-field='checkpoint'] option[value='{CKPT}']").wait_for(state="attached", timeout=60_000)
    except Exception:
        raise AssertionError(f"Generate tab did not load. Cell errors: {cell_errors(page)}; "
                             f"console: {page.sdp_console}; lab log: {lab_server.log()[-2000:]}") from None
    gen = root.locator(".sdp-gen")
    assert gen.locator(".sdp-gen-note").count() == 0, gen.inner_text()[:500]
    # The lab's store is shared by the browser suite: other tests leave fake checkpoints
    # there, listed before ours.
    gen.locator("[data-field='checkpoint'] select").select_option(CKPT)
    _fill(gen, "prompt", "a lighthouse on a cliff")
    _fill(gen, "steps", "2")
    _fill(gen, "width", "64")
    _fill(gen, "height", "64")
    _fill(gen, "seed", "77")
    gen.locator("[data-act='generate']").click()
    try:  # queued → running (a fast job may be done by the time we look)
        gen.locator(".sdp-gen-qrow[data-state='running'], .sdp-gen-qrow[data-state='done']").first.wait_for(
            state="visible", timeout=300_000)  # a loaded 2-core CI machine: the first prompt waits on the load
    except Exception:
        screenshot(root, "generate-real-failed.png")
        raise AssertionError(f"the job never ran on the real ComfyUI: {gen.inner_text()[-1500:]}; "
                             f"console: {page.sdp_console}") from None
    card = gen.locator(".sdp-gen-card").first
    try:
        card.locator("img").wait_for(state="visible", timeout=600_000)
    except Exception:
        screenshot(root, "generate-real-failed.png")
        raise AssertionError(f"no image from the real ComfyUI: {gen.inner_text()[-1500:]}; "
                             f"console: {page.sdp_console}") from None
    page.wait_for_function("i => i.complete && i.naturalWidth === 64", arg=card.locator("img").element_handle())
    meta = card.locator(".sdp-gen-cmeta").inner_text()
    assert "seed 77" in meta and "64×64" in meta and "2 steps" in meta and "sd15-random" in meta
    screenshot(root, "generate-real-comfyui-light.png")
    set_theme(page, "JupyterLab Dark")
    try:
        screenshot(root, "generate-real-comfyui-dark.png")
    finally:
        set_theme(page, "JupyterLab Light")
