"""The Downloads tab in a real JupyterLab: notebook cell 3 (interactive) queues three links
from a throttled local range server and shows the Panel on its Downloads tab. Rows progress,
one is cancelled (no file left on disk), one fails with the user-facing reason and a Retry,
the last completes — and the sound cues play through Web Audio (observed with a stub
AudioContext that records oscillator starts). The mute switch is saved in settings.json."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.range_server import Fault, RangeServer

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

# Records what the page would play: every oscillator start with its type and frequency.
# Like a real browser, the context starts "suspended" until resumed (autoplay policy).
AUDIO_STUB = """
(() => {
  window.__sdpOsc = [];
  window.__sdpCtx = 0;
  class P { constructor() { this.value = 0; }
    setValueAtTime(v) { this.value = v; return this; }
    linearRampToValueAtTime() { return this; } exponentialRampToValueAtTime() { return this; } }
  class N { connect(n) { return n; } disconnect() {} }
  class Osc extends N { constructor() { super(); this.type = "sine"; this.frequency = new P(); }
    start(t) { window.__sdpOsc.push({ type: this.type, f: this.frequency.value, t }); } stop() {} }
  class Gain extends N { constructor() { super(); this.gain = new P(); } }
  class Ctx { constructor() { window.__sdpCtx++; this.state = "suspended"; this.currentTime = 0; this.destination = new N(); }
    resume() { this.state = "running"; return Promise.resolve(); }
    createOscillator() { return new Osc(); } createGain() { return new Gain(); } }
  window.AudioContext = Ctx;
  window.webkitAudioContext = Ctx;
})();
"""
FILE_DONE, QUEUE_DONE, ERROR = 880.0, 523.25, 220.0  # first notes of each cue (sound.ts)
MiB = 1024 * 1024


def safetensors(n: int, seed: int) -> bytes:
    body = (hashlib.sha256(str(seed).encode()).digest() * (n // 32 + 1))[:n]
    header = json.dumps({"t": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + body


@pytest.fixture
def server() -> Iterator[RangeServer]:
    # 2 connections per file x 300 kB/s: seconds per file, slow enough to watch.
    with RangeServer(rate=300_000, latency=0.02) as srv:
        srv.add_file("juggernaut_xl_v9.safetensors", safetensors(12 * MiB, 1))
        srv.add_file("detail_tweaker_lora.safetensors", safetensors(int(2.5 * MiB), 2))
        srv.add_file("early_access_model.safetensors", safetensors(MiB, 3))
        # Ranged GETs answer 403 (HEAD resolves fine): fails at download time, with a reason.
        srv.add_fault("early_access_model.safetensors", Fault("status", status=403, times=None, ranged_only=True))
        yield srv


@pytest.fixture
def settings_file(lab_server: LabServer) -> Iterator[Path]:
    """settings.json of the lab's store; afterwards the store is as it was (the lab is shared
    by the session's browser tests): our kernel stops (it holds the queue's journal) and
    every file this test added goes."""
    path = lab_server.storage / ".sdpanel" / "settings.json"
    before = path.read_text() if path.exists() else None
    existing = {p for p in lab_server.storage.rglob("*") if p.is_file()}
    yield path
    lab_server.shutdown_kernels()
    for added in [p for p in lab_server.storage.rglob("*") if p.is_file() and p not in existing]:
        if added != path:
            added.unlink(missing_ok=True)
    if before is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(before)


def _pct(row: Any) -> float:
    text = row.locator(".sdp-dl-pct").inner_text().strip().rstrip("%")
    return float(text) if text else 0.0


def test_downloads_tab_progress_cancel_cues_mute(page: Any, lab_server: LabServer, server: RangeServer,
                                                settings_file: Path) -> None:
    page.add_init_script(AUDIO_STUB)
    big, small, denied = (server.url(n) for n in ("juggernaut_xl_v9.safetensors", "detail_tweaker_lora.safetensors",
                                                   "early_access_model.safetensors"))
    write_notebook(lab_server.root_dir / "downloads.ipynb", [
        "import sdpanel.cells\n"
        f"sdpanel.cells.download(model_links={[big, small, denied]!r}, download_engine='python',\n"
        "                       connections_per_file=2, max_concurrent_downloads=3)",
        # A second view of the same panel model: cues must still play once.
        "from sdpanel.panels import Panel\nPanel()"])
    open_notebook(page, lab_server, "downloads.ipynb")
    run_all_cells(page)
    root = page.locator(f"{CURRENT_NOTEBOOK} .sdpanel-root").first
    try:
        root.locator(".sdp-dl-row").nth(2).wait_for(state="visible", timeout=60_000)
    except Exception:
        raise AssertionError(f"Downloads tab did not show 3 rows. Cell errors: {cell_errors(page)}; "
                             f"console: {page.sdp_console}; lab log: {lab_server.log()[-2000:]}") from None
    assert page.locator(f"{CURRENT_NOTEBOOK} .sdpanel-root").count() == 2
    # Cell 3 opens the Panel on the Downloads tab.
    assert root.locator(".sdp-tab.sdp-active").inner_text() == "Downloads"
    # No AudioContext before a user gesture (autoplay policy); a click in the panel makes one.
    assert page.evaluate("window.__sdpCtx") == 0
    assert root.locator(".sdp-dl-sound").inner_text().endswith("Enable sound")
    root.locator(".sdp-dl-summary").click()
    page.wait_for_function("window.__sdpCtx === 1")
    assert root.locator(".sdp-dl-sound").inner_text().endswith("Sound on")

    # A third view, in JupyterLab's "SD" sidebar: cues must still play once per model.
    root.locator(".sdp-sidebar-btn").click()
    sidebar = open_sidebar(page).locator(".sdpanel-root")
    sidebar.locator(".sdp-dl-row").nth(2).wait_for(state="visible")

    row_big = root.locator(".sdp-dl-row", has_text="juggernaut_xl_v9")
    row_small = root.locator(".sdp-dl-row", has_text="detail_tweaker_lora")
    row_denied = root.locator(".sdp-dl-row", has_text="early_access_model")
    # Rows progress: the big file's percentage and bar width grow while it downloads.
    big_row_js = """[...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-dl-row')]
                     .find(e => e.textContent.includes('juggernaut_xl_v9'))"""
    page.wait_for_function(
        f"() => {{ const r = {big_row_js}; return r && r.dataset.state === 'active' && parseFloat(r.querySelector('.sdp-dl-pct').textContent) > 0; }}",
        timeout=60_000)
    bar = row_big.locator(".sdp-dl-progress > span")
    first, width1 = _pct(row_big), bar.evaluate("e => e.getBoundingClientRect().width")
    page.wait_for_function(
        f"p => {{ const r = {big_row_js}; return parseFloat(r.querySelector('.sdp-dl-pct').textContent) > p; }}",
        arg=first, timeout=30_000)
    time.sleep(0.4)  # the bar's width transition
    second, width2 = _pct(row_big), bar.evaluate("e => e.getBoundingClientRect().width")
    assert 0 < first < second < 100 and width2 > width1
    meta = row_big.locator(".sdp-dl-meta").inner_text()
    assert re.search(r"of 12(\.0)? Mi?B", meta) and "/s" in meta and "left" in meta
    assert row_big.locator(".sdp-dl-kind").inner_text() != ""
    # The refused file fails with the cause and the fix, and offers Retry.
    row_denied.locator(".sdp-dl-error").wait_for(state="visible", timeout=60_000)
    assert "403" in row_denied.locator(".sdp-dl-error").inner_text()
    assert row_denied.locator("button[data-act='retry']").is_visible()
    # Retried, it fails again with the error cue: one cue per failure, however many views
    # (if it first failed before the click that enabled sound, that one was silent).
    count = f"window.__sdpOsc.filter(o => o.f === {ERROR} && o.type === 'square').length"
    before = page.evaluate(count)
    row_denied.locator("button[data-act='retry']").click()
    page.wait_for_function(f"n => {count} > n", arg=before, timeout=30_000)
    row_denied.locator("button[data-act='retry']").wait_for(state="visible")
    time.sleep(0.5)
    errors = page.evaluate(count)
    assert errors == before + 1, (before, errors)  # once, not once per view (3 views)
    totals = root.locator(".sdp-dl-totals").inner_text()
    assert re.search(r"MI?B of", totals, re.I) and "/s" in totals
    screenshot(root, "downloads-panel.png")

    # Cancel the big one: its row says so and nothing of it stays on disk.
    row_big.locator("button[data-act='cancel']").click()
    page.wait_for_function(
        """() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-dl-row')]
                   .some(e => e.textContent.includes('juggernaut_xl_v9') && e.dataset.state === 'cancelled')""")
    assert row_big.locator(".sdp-dl-state").inner_text() == "Cancelled"
    leftovers = [p.name for p in lab_server.storage.rglob("juggernaut_xl_v9*")]
    assert leftovers == [], leftovers

    # The small one completes: verified, and the "file done" and "queue done" cues play.
    page.wait_for_function(
        """() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-dl-row')]
                   .some(e => e.textContent.includes('detail_tweaker_lora') && e.dataset.state === 'done')""",
        timeout=90_000)
    assert "sha256" in row_small.locator(".sdp-dl-meta").inner_text()
    assert [p.name for p in lab_server.storage.rglob("detail_tweaker_lora*") if not p.name.endswith(".json")] \
        == ["detail_tweaker_lora.safetensors"]
    page.wait_for_function(f"window.__sdpOsc.some(o => o.f === {QUEUE_DONE})", timeout=30_000)
    played = page.evaluate("window.__sdpOsc")
    firsts = [o["f"] for o in played]
    assert FILE_DONE in firsts and QUEUE_DONE in firsts
    # Shown once per model: one file done → exactly one "file done" chime (2 notes), even
    # though the panel could have several views.
    assert firsts.count(FILE_DONE) == 1
    time.sleep(0.5)  # let the last trait update land before the picture
    screenshot(root, "downloads-panel-done.png")
    screenshot(page.locator("#sdpanel-sidebar"), "downloads-sidebar.png")

    # Mute: saved in settings.json; further cues are silent.
    root.locator(".sdp-dl-sound").click()
    page.wait_for_function(
        "() => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-dl-sound')?.dataset.muted === 'true'")
    assert json.loads(settings_file.read_text())["audio_muted"] is True
    heard = len(page.evaluate("window.__sdpOsc"))
    row_denied.locator("button[data-act='retry']").click()  # fails again → an error cue, muted
    page.wait_for_function(
        """() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-dl-row')]
                   .some(e => e.textContent.includes('early_access_model') && e.dataset.state === 'failed'
                              && e.querySelector('button[data-act=retry]'))""", timeout=30_000)
    time.sleep(1.0)
    assert len(page.evaluate("window.__sdpOsc")) == heard
    # Unmute again (and the setting follows).
    root.locator(".sdp-dl-sound").click()
    page.wait_for_function(
        "() => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .sdp-dl-sound')?.dataset.muted === 'false'")
    assert json.loads(settings_file.read_text())["audio_muted"] is False
    # The same panel in JupyterLab's dark theme (it follows the --jp-* variables).
    set_theme(page, "JupyterLab Dark")
    try:
        root.locator(".sdp-dl-row").first.wait_for(state="visible")
        screenshot(root, "downloads-panel-dark.png")
    finally:
        set_theme(page, "JupyterLab Light")
    assert not [m for m in page.sdp_console if m.startswith("error")], page.sdp_console
