"""The Storage tab in a real JupyterLab: a seeded store (several kinds and sizes, a linked
WebUI, a duplicate pair, a stale ``.part`` download leftover), shown by notebook cell 5.
The treemap renders, the list sorts, and a clean with confirmation frees exactly the bytes
the panel shows — checked against the files gone from disk."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .lab import (
    CURRENT_NOTEBOOK,
    LabServer,
    cell_errors,
    open_notebook,
    run_all_cells,
    screenshot,
    set_theme,
    start_lab,
    write_notebook,
)

pytestmark = pytest.mark.browser

MiB = 1024 * 1024
GiB = 1024 * MiB
DAY = 86400

# (relative path, size, age in days, base model). Sizes differ so only the planted pair
# below has a twin; files are sparse, so gigabytes cost nothing.
MODELS = [
    ("checkpoints/juggernautXL_v9.safetensors", int(6.62 * GiB), 12, "SDXL 1.0"),
    ("checkpoints/sd_xl_base_1.0.safetensors", int(6.46 * GiB) + 1, 50, "SDXL 1.0"),
    ("checkpoints/realisticVision_v60.safetensors", int(1.99 * GiB), 120, "SD 1.5"),
    ("controlnet/control_v11p_sd15_openpose.pth", int(1.36 * GiB), 80, "SD 1.5"),
    ("vae/sdxl_vae.safetensors", 319 * MiB + 7, 50, "SDXL 1.0"),
    ("loras/add_detail.safetensors", 144 * MiB + 3, 95, "SD 1.5"),
    ("loras/pixel_art_xl.safetensors", 163 * MiB + 5, 40, "SDXL 1.0"),
    ("loras/film_grain_style.safetensors", 218 * MiB + 9, 3, "SDXL 1.0"),
    ("upscalers/4x-UltraSharp.pth", 64 * MiB + 11, 200, ""),
    ("embeddings/easynegative.safetensors", 25 * 1024 + 13, 150, "SD 1.5"),
]
LEFTOVER = ("checkpoints/ponyDiffusionV6XL.safetensors.part", int(1.2 * GiB) + 17, 20 * 60)
FRESH = ("loras/downloading_now.safetensors.part", 40 * MiB + 19, 0)
DUP = ("loras/detail_tweaker_xl.safetensors", "loras/copies/detail_tweaker_xl.safetensors")


def _sparse(path: Path, size: int, age_s: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.truncate(size)
    t = time.time() - age_s
    os.utime(path, (t, t))


@pytest.fixture(scope="module")
def storage_lab(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """A JupyterLab of its own: the session's shared store holds other tests' files, and a
    clean of leftovers there could take theirs."""
    server = start_lab(tmp_path_factory.mktemp("storage-lab"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def seeded_store(storage_lab: LabServer, tmp_path: Path) -> Path:
    lab_server = storage_lab
    from sdpanel.storage import StorageRoot, dedup, link_webui

    root = StorageRoot.at(lab_server.storage).ensure()
    for rel, size, days, base in MODELS:
        _sparse(root.path / rel, size, days * DAY)
        if base:
            p = root.path / rel
            p.with_name(p.stem + ".civitai.json").write_text(json.dumps({"base_model": base, "source": "civitai", "model_name": p.stem}))
    _sparse(root.path / LEFTOVER[0], LEFTOVER[1], LEFTOVER[2])
    _sparse(root.path / FRESH[0], FRESH[1], FRESH[2])
    content = os.urandom(1024) * (9 * 1024)  # 9 MiB of real bytes, twice
    for rel in DUP:
        (root.path / rel).parent.mkdir(parents=True, exist_ok=True)
        (root.path / rel).write_bytes(content)
        t = time.time() - 60 * DAY
        os.utime(root.path / rel, (t, t))
    # Hash the equal-size pair (dry run: nothing changes) so the list can mark it.
    assert dedup(root, dry_run=True).files_replaced == 1
    webui = tmp_path / "stable-diffusion-webui"
    webui.mkdir()
    assert link_webui(root, webui, "a1111").ok
    return root.path


def _show_storage(page: Any, lab_server: LabServer) -> Any:
    page.set_viewport_size({"width": 1400, "height": 1500})
    write_notebook(lab_server.root_dir / "storage.ipynb", ["import sdpanel.cells\nsdpanel.cells.storage()",
                                                                   "sdpanel.panels.Panel().show_in_sidebar()"])
    open_notebook(page, lab_server, "storage.ipynb")
    run_all_cells(page)
    root = page.locator(f"{CURRENT_NOTEBOOK} .sdpanel-root").first
    try:
        root.locator(".sdp-tm-cell").first.wait_for(state="visible", timeout=60_000)
    except Exception:
        raise AssertionError(f"Storage tab did not render. Cell errors: {cell_errors(page)}; "
                             f"console: {page.sdp_console}") from None
    return root


def test_storage_tab_treemap_list_and_clean(page: Any, storage_lab: LabServer, seeded_store: Path) -> None:
    store, lab_server = seeded_store, storage_lab
    root = _show_storage(page, lab_server)
    # Cell 5 opens the Panel on its Storage tab.
    assert root.locator(".sdp-tab.sdp-active").inner_text() == "Storage"

    # Treemap: one box per kind that holds bytes, one cell per model (+ "rest" blocks for sidecars).
    kinds = {rel.split("/")[0] for rel, *_ in MODELS}
    assert sorted(root.locator(".sdp-tm-kind").evaluate_all("els => els.map(e => e.dataset.kind)")) == sorted(kinds)
    n_models = len(MODELS) + len(DUP)
    drawn = root.locator(".sdp-tm-cell:not(.sdp-tm-rest)").evaluate_all("els => els.map(e => e.title.split('\\n')[0])")
    # Every model of a MiB or more gets its cell (a 25 KiB embedding in 17 GiB is below a pixel).
    big = {rel for rel, size, *_ in MODELS if size >= MiB} | set(DUP)
    assert big <= set(drawn) and len(drawn) == len(set(drawn)) <= n_models
    labels = root.locator(".sdp-tm-name").all_inner_texts()
    assert "juggernautXL_v9.safetensors" in labels and "sd_xl_base_1.0.safetensors" in labels
    tip = root.locator(".sdp-tm-cell[title^='checkpoints/juggernautXL_v9']").get_attribute("title")
    assert "6.6 GiB" in tip and "SDXL 1.0" in tip
    # The biggest model gets the biggest cell.
    areas = root.locator(".sdp-tm-cell:not(.sdp-tm-rest)").evaluate_all(
        "els => els.map(e => [e.title.split('\\n')[0], e.offsetWidth * e.offsetHeight])")
    assert max(areas, key=lambda a: a[1])[0] == "checkpoints/juggernautXL_v9.safetensors"
    # Disk bar of the store's disk, with the store's share.
    assert root.locator(".sdp-disk[data-disk^='Store'] .sdp-disk-bar .sdp-disk-mine").count() == 1
    assert "free of" in root.locator(".sdp-disk-free").first.inner_text()

    # File list: base model from the sidecar, WebUI that links it, the duplicate pair marked.
    rows = root.locator(".sdp-st-table tbody tr[data-path]")
    assert rows.count() == n_models
    jug = root.locator("tr[data-path='checkpoints/juggernautXL_v9.safetensors']")
    assert "SDXL 1.0" in jug.inner_text() and "AUTOMATIC1111" in jug.inner_text()
    assert root.locator("tr[data-path] .sdp-dup").count() == 2
    # Sorted by size (largest first) by default; Name sorts A→Z.
    assert rows.first.get_attribute("data-path") == "checkpoints/juggernautXL_v9.safetensors"
    root.locator(".sdp-st-table th[data-sort='name']").click()
    names = root.locator(".sdp-st-table tbody td.sdp-st-name").all_inner_texts()
    assert names == sorted(names, key=str.lower)
    root.locator(".sdp-st-table th[data-sort='size']").click()
    screenshot(root, "storage-panel.png")
    set_theme(page, "JupyterLab Dark")
    try:
        screenshot(root, "storage-panel-dark.png")
    finally:
        set_theme(page, "JupyterLab Light")

    # Cleaner: LoRAs older than 30 days + download leftovers → preview → confirm.
    root.locator(".sdp-st-kinds label[data-kind='loras'] input").check()
    root.locator("input[data-field='older_than_days']").fill("30")
    root.locator("input[data-field='leftovers']").check()
    root.locator("button[data-act='preview']").click()
    plan = root.locator(".sdp-st-plan")
    plan.wait_for(state="visible")
    listed = plan.locator(".sdp-st-plan-list td.sdp-mono").all_inner_texts()
    expect = {"loras/add_detail.safetensors", "loras/add_detail.civitai.json",
              "loras/pixel_art_xl.safetensors", "loras/pixel_art_xl.civitai.json",
              *DUP, LEFTOVER[0]}
    assert set(listed) == expect  # not the fresh LoRA, not the download in progress
    shown = int(plan.locator(".sdp-st-plan-bytes").get_attribute("data-bytes"))
    sizes = {rel: (store / rel).stat().st_size for rel in listed}
    # The duplicate pair are two distinct files here (dry-run dedup): both sizes return.
    assert shown == sum(sizes.values())
    delete = plan.locator("button[data-act='apply']")
    assert delete.inner_text().startswith(f"Delete {len(expect)} files (")
    screenshot(root, "storage-clean-preview.png")
    assert all((store / rel).exists() for rel in listed)  # nothing goes before the confirmation
    delete.click()

    result = root.locator(".sdp-st-result")
    result.wait_for(state="visible")
    freed = int(result.locator(".sdp-st-freed").get_attribute("data-bytes"))
    gone = [rel for rel in listed if not (store / rel).exists()]
    assert sorted(gone) == sorted(listed)
    assert freed == shown == sum(sizes[rel] for rel in gone)
    assert (store / FRESH[0]).exists() and (store / "loras/film_grain_style.safetensors").exists()
    # Usage is read again: the deleted models leave the treemap and the list.
    page.wait_for_function(
        """() => !document.querySelector(".jp-NotebookPanel:not(.lm-mod-hidden) tr[data-path='loras/add_detail.safetensors']")""")
    after = root.locator(".sdp-tm-cell:not(.sdp-tm-rest)").evaluate_all("els => els.map(e => e.title.split('\\n')[0])")
    assert set(after) == set(drawn) - set(listed)
    result.scroll_into_view_if_needed()
    screenshot(root, "storage-clean.png")
    # The same live view fits JupyterLab's narrow sidebar.
    side = page.locator("#sdpanel-sidebar .sdpanel-live-host .sdpanel-root")
    side.locator(".sdp-tm-cell").first.wait_for(state="visible")
    assert side.locator(".sdp-tab.sdp-active").inner_text() == "Storage"
    screenshot(page.locator("#sdpanel-sidebar"), "storage-sidebar.png")
    assert not [m for m in page.sdp_console if m.startswith("error")], page.sdp_console
