"""The Generate panel in a real JupyterLab + Chromium against a stub ComfyUI (found by the
kernel and the server through its ``webui-comfyui.json`` pid record, as a launched WebUI is):

- notebook Panel, Generate tab: a bad width is marked next to its field; txt2img → the image
  appears in the gallery with its parameters;
- inpaint: an uploaded image, a mask PAINTED with mouse drags on the canvas → the stub
  received a mask PNG of the image's size, white where the stroke went, black elsewhere;
- the SD sidebar with no kernel at all: txt2img over REST + SSE → the image is shown.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from sdpanel.generate._png import decode_png, gradient_png
from sdpanel.storage import StorageRoot
from tests.fixtures.stub_comfyui import StubComfyUI

from .lab import (
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

pytestmark = pytest.mark.browser


@pytest.fixture
def comfy(lab_server: LabServer) -> Iterator[StubComfyUI]:
    """A stub ComfyUI recorded like a launched WebUI, plus a checkpoint in the lab's store;
    afterwards the store is as it was (the lab is shared by the session's browser tests)."""
    store = StorageRoot.at(lab_server.storage).ensure()
    existing = {p for p in lab_server.storage.rglob("*") if p.is_file()}
    ckpt = store.kind_dir("checkpoints") / "dreamshaper_8.safetensors"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_bytes(b"stub weights")
    with StubComfyUI(step_delay=0.12, checkpoints=["dreamshaper_8.safetensors"]) as stub:
        record = store.state_path("pids", "webui-comfyui.json")
        record.write_text(json.dumps({
            "name": "comfyui", "flavour": "comfyui", "port": stub.port, "pid": os.getpid(),
            "cmdline": psutil.Process().cmdline()}))
        yield stub  # type: ignore[misc]
        record.unlink(missing_ok=True)
    lab_server.shutdown_kernels()
    for added in [p for p in lab_server.storage.rglob("*") if p.is_file() and p not in existing]:
        added.unlink(missing_ok=True)


def _fill(scope: Any, field: str, value: str) -> None:
    scope.locator(f"[data-field='{field}'] .sdp-input").first.fill(value)


def _loaded_width(page: Any, scope: Any, n: int = 1) -> int:
    """Wait until ``scope`` shows ``n`` loaded gallery images; the newest one's pixel width."""
    page.wait_for_function(
        """([root, n]) => {
          const imgs = [...root.querySelectorAll('.sdp-gen-card img')];
          return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0);
        }""", arg=[scope.element_handle(), n], timeout=60_000)
    return int(scope.locator(".sdp-gen-card img").first.evaluate("i => i.naturalWidth"))


def test_generate_tab_txt2img_errors_and_inpaint_mask(page: Any, lab_server: LabServer, comfy: StubComfyUI,
                                                       tmp_path: Path) -> None:
    write_notebook(lab_server.root_dir / "generate.ipynb", [
        "from sdpanel.panels import Panel\np = Panel()\np.active_tab = 'generate'\np"])
    page.set_viewport_size({"width": 1400, "height": 1500})  # the whole tab in one screenshot
    open_notebook(page, lab_server, "generate.ipynb")
    set_theme(page, "JupyterLab Dark")
    try:
        _generate_tab(page, lab_server, comfy, tmp_path)
    finally:
        set_theme(page, "JupyterLab Light")


def _generate_tab(page: Any, lab_server: LabServer, comfy: StubComfyUI, tmp_path: Path) -> None:
    run_all_cells(page)
    root = page.locator(f"{CURRENT_NOTEBOOK} .sdpanel-root").first
    try:
        root.locator(".sdp-gen").wait_for(state="visible", timeout=60_000)
        root.locator("[data-field='checkpoint'] option[value='dreamshaper_8.safetensors']").wait_for(state="attached")
    except Exception:
        raise AssertionError(f"Generate tab did not load. Cell errors: {cell_errors(page)}; "
                             f"console: {page.sdp_console}; lab log: {lab_server.log()[-2000:]}") from None
    gen = root.locator(".sdp-gen")
    assert gen.locator(".sdp-gen-note").count() == 0, gen.locator(".sdp-gen-notice").inner_text()

    # A bad field is marked where it is, with the fix.
    _fill(gen, "prompt", "a lighthouse on a cliff at dusk, volumetric light")
    _fill(gen, "negative_prompt", "blurry, lowres")
    _fill(gen, "steps", "8")
    _fill(gen, "width", "250")
    _fill(gen, "height", "192")
    _fill(gen, "seed", "4242")
    gen.locator("[data-act='generate']").click()
    err = gen.locator("[data-field='width'] .sdp-gen-err")
    err.wait_for(state="visible")
    assert "multiple of 8" in err.inner_text() and "248 or 256" in err.inner_text()
    assert comfy.prompts == []

    # txt2img: progress in the queue, then the image in the gallery with its parameters.
    _fill(gen, "width", "256")
    gen.locator("[data-act='generate']").click()
    gen.locator(".sdp-gen-qrow[data-state='running']").wait_for(state="visible", timeout=30_000)
    card = gen.locator(".sdp-gen-card").first
    try:
        card.locator("img").wait_for(state="visible", timeout=60_000)
    except Exception:
        screenshot(root, "generate-panel-failed.png")
        raise AssertionError(f"no image in the gallery: {gen.inner_text()[-1500:]}; "
                             f"console: {page.sdp_console}; lab log: {lab_server.log()[-2000:]}") from None
    assert _loaded_width(page, gen) == 256
    meta = card.locator(".sdp-gen-cmeta").inner_text()
    assert "seed 4242" in meta and "256×192" in meta and "8 steps" in meta and "dreamshaper_8" in meta
    assert "lighthouse" in card.locator(".sdp-gen-cprompt").inner_text()
    assert not err.is_visible()
    assert any("a lighthouse on a cliff" in json.dumps(g) for g in comfy.prompts)

    # A longer job: the queue shows its progress bar and the live preview while it runs.
    _fill(gen, "steps", "40")
    _fill(gen, "seed", "-1")
    gen.locator("[data-act='generate']").click()
    running = gen.locator(".sdp-gen-qrow[data-state='running']")
    running.locator(".sdp-gen-prev").wait_for(state="visible", timeout=30_000)
    page.wait_for_function("el => parseFloat(el.style.width) > 10",
                           arg=running.locator(".sdp-gen-bar > span").element_handle())
    assert "step" in running.locator(".sdp-gen-qtext").inner_text()
    screenshot(root, "generate-panel.png")
    assert _loaded_width(page, gen, 2) == 256

    # Inpaint: upload an image, paint a horizontal stroke across its middle, submit.
    src = tmp_path / "street.png"
    src.write_bytes(gradient_png(320, 256, 99))
    gen.locator("[data-mode='inpaint']").click()
    gen.locator("input[type='file'][data-input='image']").set_input_files(str(src))
    canvas = gen.locator(".sdp-gen-maskview")
    canvas.wait_for(state="visible")
    box = canvas.bounding_box()
    assert box and box["width"] > 100
    y = box["y"] + box["height"] * 0.5
    page.mouse.move(box["x"] + box["width"] * 0.25, y)
    page.mouse.down()
    for i in range(1, 21):
        page.mouse.move(box["x"] + box["width"] * (0.25 + 0.5 * i / 20), y)
    page.mouse.up()
    # A short second stroke, then erase part of it: the eraser must unpaint.
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.3, steps=5)
    page.mouse.up()
    gen.locator("[data-tool='eraser']").click()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.3, steps=5)
    page.mouse.up()
    gen.locator("[data-tool='brush']").click()
    _fill(gen, "prompt", "a red door")
    screenshot(root, "generate-mask.png")
    gen.locator("[data-act='generate']").click()
    assert _loaded_width(page, gen, 3) == 320

    masks = [v for k, v in comfy.uploads.items() if k.endswith("-mask.png")]
    assert len(masks) == 1, list(comfy.uploads)
    mask = decode_png(masks[0], 10**7)
    assert (mask.width, mask.height) == (320, 256)
    step = mask.channels

    def px(x: float, y: float) -> int:
        return int(mask.rows[int(y * mask.height)][int(x * mask.width) * step])

    assert px(0.5, 0.5) == 255 and px(0.3, 0.5) == 255 and px(0.7, 0.5) == 255  # the stroke
    assert px(0.05, 0.05) == 0 and px(0.5, 0.9) == 0 and px(0.95, 0.5) == 0  # untouched
    assert px(0.5, 0.25) == 0  # painted, then erased
    newest = gen.locator(".sdp-gen-card").first
    assert "inpaint" in newest.locator(".sdp-gen-cmeta").inner_text()
    assert "320×256" in newest.locator(".sdp-gen-cmeta").inner_text()

    # "img2img" on the first txt2img image sends it as the input, with its parameters.
    first = gen.locator(".sdp-gen-card").last
    first.locator("[data-act='to-img2img']").click()
    page.wait_for_function("el => el.textContent.includes('256×192')",
                           arg=gen.locator(".sdp-gen-inputinfo").element_handle())
    assert gen.locator("[data-mode='img2img']").get_attribute("aria-selected") == "true"
    assert gen.locator("[data-field='prompt'] textarea").input_value().startswith("a lighthouse")
    assert gen.locator("[data-field='denoise']").is_visible()
    # Re-run with the same seed: a new txt2img image, seed 4242 again.
    first.locator("[data-act='rerun']").click()
    assert _loaded_width(page, gen, 4) == 256
    rerun = gen.locator(".sdp-gen-card").first.locator(".sdp-gen-cmeta").inner_text()
    assert "txt2img" in rerun and "seed 4242" in rerun and "8 steps" in rerun


def test_sidebar_generates_without_a_kernel(page: Any, lab_server: LabServer, comfy: StubComfyUI) -> None:
    lab_server.shutdown_kernels()
    page.set_viewport_size({"width": 1400, "height": 1600})  # the whole sidebar in one screenshot
    open_lab(page, lab_server)
    set_theme(page, "JupyterLab Dark")
    try:
        _sidebar(page, lab_server)
    finally:
        set_theme(page, "JupyterLab Light")


def _sidebar(page: Any, lab_server: LabServer) -> None:
    panel = open_sidebar(page)
    # Widen the sidebar the way a user does: drag its splitter handle to the right.
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    hb = handle.bounding_box()
    if hb:
        page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + 300)
        page.mouse.down()
        page.mouse.move(hb["x"] + 140, hb["y"] + 300, steps=8)
        page.mouse.up()
    side = panel.locator("[data-view='sidebar-generate']")
    side.scroll_into_view_if_needed()
    side.locator("[data-field='checkpoint'] option[value='dreamshaper_8.safetensors']").wait_for(state="attached")
    _fill(side, "prompt", "a paper boat on a pond, morning mist")
    _fill(side, "steps", "6")
    _fill(side, "width", "192")
    _fill(side, "height", "192")
    side.locator("[data-act='generate']").click()
    side.locator(".sdp-gen-card img").first.wait_for(state="visible", timeout=60_000)
    assert _loaded_width(page, side) == 192
    assert "6 steps" in side.locator(".sdp-gen-cmeta").first.inner_text()
    assert lab_server.api("api/kernels") == []  # all of it without a kernel
    jobs = lab_server.api("sdpanel/api/jobs?state=succeeded")["jobs"]
    assert any(j["params"]["prompt"].startswith("a paper boat") for j in jobs)
    side.scroll_into_view_if_needed()
    screenshot(panel, "sidebar-generate.png")
