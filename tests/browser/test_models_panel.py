"""The Models tab in a real JupyterLab (Debian Chromium): search, filter by base model,
details, scroll to page 2, select in two sub-tabs, send to Downloads — and the files
arrive in the store through the real queue."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from sdpanel.generate._png import decode_png
from tests.fixtures.civitai_server import CivitAIServer

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

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def civitai() -> Iterator[CivitAIServer]:
    with CivitAIServer(extra_models=200) as srv:
        yield srv


def show_models(page: Any, lab: LabServer, civitai: CivitAIServer, name: str) -> Any:
    code = ("import os\n"
            f"os.environ['SDPANEL_CIVITAI_BASE_URL'] = {civitai.base_url!r}\n"
            "os.environ['SDPANEL_DOWNLOAD_ENGINE'] = 'python'\n"
            "from sdpanel.panels import Panel\n"
            "p = Panel()\np.active_tab = 'models'\np")
    write_notebook(lab.root_dir / name, [code])
    open_notebook(page, lab, name)
    run_all_cells(page)
    root = page.locator(f"{CURRENT_NOTEBOOK} .sdpanel-root").first
    try:
        root.locator(".sdp-md-card").first.wait_for(state="visible", timeout=30_000)
    except Exception:
        raise AssertionError(f"No model cards. Cell errors: {cell_errors(page)}; console: {page.sdp_console}") from None
    return root


def wait_results(root: Any, page: Any, minimum: int = 1) -> None:
    page.wait_for_function(
        """n => { const r = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-md');
                  return r && r.dataset.status === 'ready' && r.querySelectorAll('.sdp-md-card').length >= n; }""",
        arg=minimum)


def test_models_browse_select_and_send(page: Any, lab_server: LabServer, civitai: CivitAIServer) -> None:
    page.set_viewport_size({"width": 1400, "height": 1300})  # the whole panel in one screenshot
    root = show_models(page, lab_server, civitai, "models.ipynb")
    wait_results(root, page)
    assert root.locator(".sdp-tab.sdp-active").inner_text() == "Models"
    subtabs = root.locator(".sdp-md-subtab").all_inner_texts()
    assert subtabs == ["Checkpoints", "LoRA", "VAE", "Embeddings", "ControlNet", "Upscalers", "Other",
                       "Presets", "Hugging Face"]
    types = {r.query for r in civitai.requests_to("/api/v1/models")}
    assert any("types=Checkpoint" in q for q in types)

    # Thumbnails come straight from the image URL, loaded by the browser.
    img = root.locator(".sdp-md-card img").first
    assert img.get_attribute("src").startswith(civitai.base_url + "/img/")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
    assert civitai.requests_to("/img/")

    # Filter by base model (the list comes from /api/v1/enums).
    root.locator(".sdp-md-bases > summary").click()
    root.locator("input[data-base='SD 1.5']").check()
    page.wait_for_function(
        """() => { const r = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-md');
                   const bases = [...r.querySelectorAll('.sdp-md-card .sdp-md-base')].map(e => e.textContent);
                   return r.dataset.status === 'ready' && bases.length > 0 && bases.every(b => b === 'SD 1.5'); }""")
    assert any(parse_qs(r.query).get("baseModels") == ["SD 1.5"] for r in civitai.requests_to("/api/v1/models"))
    root.locator(".sdp-md-bases > summary").click()

    # Details of a checkpoint: versions, files with format/fp/size, sanitised description.
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    card = root.locator(".sdp-md-card", has_text="Dreamy Realism").first
    card.locator(".sdp-md-check").check()  # select the checkpoint (sub-tab 1)
    card.locator(".sdp-md-name").click()
    details = root.locator(".sdp-md-details")
    details.locator(".sdp-md-files tbody tr").first.wait_for()
    assert details.locator(".sdp-md-vtab").all_inner_texts()[:2] == ["v2.0", "v1.0"]
    rows = details.locator(".sdp-md-files tbody tr").all_inner_texts()
    assert len(rows) == 3 and any("VAE" in r and "fp16" in r for r in rows)
    desc = details.locator(".sdp-md-desc")
    assert desc.locator("b").inner_text() == "by" and desc.locator("script").count() == 0
    assert "alert" not in desc.inner_html() and not dialogs
    details.locator(".sdp-md-files tbody tr", has_text="_vae").locator("input").check()  # a non-primary file
    root.locator(".sdp-md-selbar").wait_for()
    screenshot(root, "models-details.png")
    details.locator(".sdp-md-close").click()

    # LoRA sub-tab, all base models: page 1 (100 cards), scroll → page 2 by cursor.
    root.locator(".sdp-md-bases > summary").click()
    root.locator("input[data-base='SD 1.5']").uncheck()
    root.locator(".sdp-md-bases > summary").click()
    root.locator(".sdp-md-subtab[data-sub='loras']").click()
    page.wait_for_function(
        """() => { const r = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-md');
                   const on = r.querySelector('.sdp-md-subtab.sdp-md-on');
                   return r.dataset.status === 'ready' && on && on.dataset.sub === 'loras'
                          && r.querySelectorAll('.sdp-md-card').length === 100; }""")
    assert root.locator(".sdp-md-subtab.sdp-md-on").inner_text().startswith("LoRA")
    assert root.locator(".sdp-md-grid").get_attribute("data-pages") == "1"
    root.locator(".sdp-md-results").evaluate("el => el.scrollTo(0, el.scrollHeight)")
    page.wait_for_function(
        "() => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-md-grid')?.dataset.pages === '2'")
    total = root.locator(".sdp-md-card").count()
    assert total > 100
    assert any("cursor=" in r.query for r in civitai.requests_to("/api/v1/models"))
    later = root.locator(".sdp-md-card").nth(110)  # on page 2
    later.locator(".sdp-md-check").check()  # a card from page 2 of sub-tab 2
    later_name = later.locator(".sdp-md-name").inner_text()

    # One selection across sub-tabs and pages, with its size against free space.
    bar = root.locator(".sdp-md-selbar")
    assert bar.locator(".sdp-md-download").inner_text().startswith("Download 3 (")
    assert "free" in bar.locator(".sdp-md-space").inner_text()
    counts = dict(zip(root.locator(".sdp-md-subtab").evaluate_all("els => els.map(e => e.dataset.sub)"),
                      root.locator(".sdp-md-subtab").all_inner_texts(), strict=True))
    assert counts["checkpoints"].endswith("2") and counts["loras"].endswith("1")
    later.scroll_into_view_if_needed()
    page.wait_for_timeout(300)  # thumbnails of the visible rows
    screenshot(root, "models-panel.png")
    set_theme(page, "JupyterLab Dark")
    try:
        screenshot(root, "models-panel-dark.png")
    finally:
        set_theme(page, "JupyterLab Light")

    bar.locator(".sdp-md-download").click()
    # Python confirms with a cue: the selection empties and a toast says where they went.
    page.wait_for_function(
        "() => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-md-selbar')?.hidden === true")
    root.locator(".sdp-md-ok", has_text="Sent 3 files").wait_for()

    # The queue received the three exact files and downloads them into the store.
    journal = lab_server.storage / ".sdpanel" / "journals" / "downloads.json"
    deadline = time.monotonic() + 60
    files = [lab_server.storage / "checkpoints" / "DreamyRealism_v2.safetensors",
             lab_server.storage / "vae" / "DreamyRealism_v2_vae.safetensors"]
    while time.monotonic() < deadline and not all(f.is_file() for f in files):
        time.sleep(0.3)
    while time.monotonic() < deadline and not list((lab_server.storage / "loras").glob("*.safetensors")):
        time.sleep(0.3)
    assert all(f.is_file() for f in files), list(lab_server.storage.rglob("*"))
    assert [f.name for f in (lab_server.storage / "loras").glob("*.safetensors")] == [
        later_name.replace(" ", "") + "_v1.safetensors"]
    raw = json.loads(journal.read_text())
    items = raw["items"] if isinstance(raw, dict) else raw
    specs = [i["spec"] for i in items]
    assert {s["kind"] for s in specs} == {"checkpoints", "vae", "loras"}
    assert {s["metadata"]["model_name"] for s in specs} >= {"Dreamy Realism", later_name}
    assert all(s["sha256"] for s in specs)
    assert not [m for m in page.sdp_console if m.startswith("error")], page.sdp_console

    # NSFW is off by default; switched on, NSFW thumbnails show blurred.
    assert not root.locator(".sdp-md-nsfw-box").is_checked()
    root.locator(".sdp-md-nsfw-box").check()
    root.locator(".sdp-md-q").fill("spicy")
    root.locator(".sdp-md-q").press("Enter")
    check_nsfw_previews_blurred(page, root)


def _contrast(png: bytes) -> float:
    """Standard deviation of the pixel values in the middle of a screenshot (the outer
    quarter cut: the checkbox and tags sit there): the fixture's checkerboard thumbnails
    score high when sharp and near zero when blurred."""
    img = decode_png(png, max_pixels=4_000_000)
    step, rows = img.channels, img.rows
    x0, x1 = img.width // 4, img.width * 3 // 4
    values = [v for row in rows[len(rows) // 4:len(rows) * 3 // 4] for v in row[x0 * step:x1 * step]]
    mean = sum(values) / len(values)
    return (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5


def wait_loaded(page: Any, img: Any) -> None:
    """Until the thumbnail has loaded (or failed: then say which URL). Thumbnails load
    lazily, so the image is brought into view first, as the user scrolling to it does; the
    locator is resolved again on each try, since results can re-render in between."""
    deadline, state = time.monotonic() + 30, None
    while True:
        try:
            img.scroll_into_view_if_needed(timeout=2000)
            state = img.evaluate("i => ({done: i.complete, ok: i.naturalWidth > 0, src: i.src})",
                                 timeout=2000)
        except PlaywrightError:
            state = None  # the card was re-rendered between the query and the check
        if state and state["done"]:
            assert state["ok"], f"thumbnail did not load: {state['src']} ({page.sdp_console[-5:]})"
            return
        assert time.monotonic() < deadline, f"thumbnail never finished loading ({state})"
        page.wait_for_timeout(200)


def check_nsfw_previews_blurred(page: Any, root: Any) -> None:
    """What the user sees: the NSFW card's picture is blurred (measured on the pixels, not
    only a computed style, and retried so a re-render between query and check cannot fool
    it), the NSFW tag reveals that one card and blurs it again, the details view blurs too."""
    nsfw_card = root.locator(".sdp-md-card.sdp-md-nsfw", has_text="Spicy Body")
    nsfw_card.wait_for()
    thumb, pic = nsfw_card.locator(".sdp-md-thumb"), nsfw_card.locator(".sdp-md-thumb img")
    expect(pic).to_have_css("filter", re.compile(r"blur\(16px\)"))
    wait_loaded(page, pic)
    blurred = _contrast(thumb.screenshot())
    screenshot(nsfw_card, "models-nsfw-blurred.png")
    reveal = nsfw_card.locator("[data-act=reveal]")
    reveal.click()
    expect(pic).to_have_css("filter", "none")
    sharp = _contrast(thumb.screenshot())
    screenshot(nsfw_card, "models-nsfw-revealed.png")
    assert sharp > 3 * blurred + 5, (blurred, sharp)
    reveal.click()
    expect(pic).to_have_css("filter", re.compile(r"blur"))
    assert _contrast(thumb.screenshot()) < sharp / 3
    # A click on the card opens its details: the large preview is blurred as well.
    nsfw_card.locator(".sdp-md-info").click()
    preview = root.locator(".sdp-md-preview.sdp-md-nsfw")
    preview.wait_for()
    expect(preview.locator("img")).to_have_css("filter", re.compile(r"blur\(16px\)"))
    wait_loaded(page, preview.locator("img"))
    screenshot(preview, "models-nsfw-details-blurred.png")
    assert _contrast(preview.screenshot()) < sharp / 3
    preview.click()
    expect(preview.locator("img")).to_have_css("filter", "none")
