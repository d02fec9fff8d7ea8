"""What a newcomer meets, in a real JupyterLab (issue 16): causes shown where the user
looks, one WebUI choice in every tab, a quiet first open of the Models tab, a usable
Panel in the 250 px sidebar. Screenshots: light + dark at 1400 px, and the sidebar."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.unit.test_cli import notebook_text

from .lab import (
    CURRENT_NOTEBOOK,
    REPO,
    LabServer,
    cell_errors,
    free_port,
    open_notebook,
    open_sidebar,
    run_all_cells,
    screenshot,
    set_sidebar_width,
    set_theme,
    write_notebook,
)

pytestmark = pytest.mark.browser


def _panel(page: Any, lab_server: LabServer, name: str, cells: list[str]) -> Any:
    write_notebook(lab_server.root_dir / name, cells)
    open_notebook(page, lab_server, name)
    run_all_cells(page)
    root = page.locator(f"{CURRENT_NOTEBOOK} .sdpanel-root").first
    try:
        root.locator(".sdp-tab").first.wait_for(state="visible", timeout=60_000)
    except Exception:
        raise AssertionError(f"no Panel. Cell errors: {cell_errors(page)}; console: {page.sdp_console}") from None
    return root


def _light_dark(page: Any, target: Any, name: str) -> None:
    screenshot(target, f"{name}.png")
    set_theme(page, "JupyterLab Dark")
    try:
        screenshot(target, f"{name}-dark.png")
    finally:
        set_theme(page, "JupyterLab Light")


def _in_sidebar(page: Any, tab: str) -> Any:
    """The live Panel in the SD sidebar at 250 px, on ``tab``."""
    page.evaluate("""async () => {
      const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
      await k.requestExecute({ code: 'import sdpanel.panels\\nsdpanel.panels.Panel().show_in_sidebar()' }).done;
    }""")
    panel = open_sidebar(page)
    set_sidebar_width(page, 250)
    side = panel.locator(".sdpanel-live-host .sdpanel-root").first
    side.locator(f".sdp-tab[data-tab='{tab}']").click()
    return side


def test_failed_install_shows_cause_fix_and_last_lines(page: Any, lab_server: LabServer, tmp_path: Path) -> None:
    """Offline, Install from a git repository fails: the box says why (no network / cannot
    resolve the host) and what to do in one sentence, with git's last lines under it."""
    setup = f"import os\nos.environ['SDPANEL_WEBUIS_DIR'] = {str(tmp_path / 'webuis')!r}"
    page.set_viewport_size({"width": 1400, "height": 1100})
    root = _panel(page, lab_server, "offline-install.ipynb", [setup, "import sdpanel.cells\nsdpanel.cells.launch()"])
    root.locator("input[data-field='source']").fill("https://github.invalid/comfyanonymous/ComfyUI")
    root.locator("input[data-field='extensions']").uncheck()
    root.locator("button[data-act='install']").click()
    error = root.locator(".sdp-la-error")
    error.wait_for(state="visible", timeout=90_000)
    head = error.locator(":scope > span").inner_text()
    assert head == ("Install failed: git fetch failed (exit 128): no network / cannot resolve "
                    "github.invalid; check the network connection (or the host name), then retry."), head
    lines = error.locator("pre.sdp-la-error-lines")
    assert "Could not resolve host: github.invalid" in lines.inner_text()
    assert error.locator("button[data-act='retry']").is_visible()
    error.scroll_into_view_if_needed()
    _light_dark(page, root, "newcomer-install-offline")
    side = _in_sidebar(page, "launch")
    side.locator(".sdp-la-error pre.sdp-la-error-lines").wait_for(state="visible")
    screenshot(page.locator("#sdpanel-sidebar"), "newcomer-install-offline-sidebar.png")


def _pick(root: Any, tab: str, selector: str, value: str) -> None:
    root.locator(f".sdp-tab[data-tab='{tab}']").click()
    root.locator(selector).select_option(value)


def test_one_webui_choice_in_every_tab(page: Any, lab_server: LabServer) -> None:
    """Settings' WebUI and the Launch tab's picker are one setting: a change in either
    shows in the other (and is saved)."""
    root = _panel(page, lab_server, "one-webui.ipynb", ["import sdpanel.panels\nsdpanel.panels.Panel()"])
    settings_sel = "select[data-key='webui']"
    launch_sel = "select[data-field='webui']"
    try:
        _pick(root, "settings", settings_sel, "forge")
        page.wait_for_function(f"() => document.querySelector(\"{CURRENT_NOTEBOOK} {settings_sel}\").value === 'forge'")
        root.locator(".sdp-tab[data-tab='launch']").click()
        page.wait_for_function(f"() => document.querySelector(\"{CURRENT_NOTEBOOK} {launch_sel}\").value === 'forge'")
        assert root.locator(f"{launch_sel} option:checked").inner_text() == "Stable Diffusion WebUI Forge"
        _pick(root, "launch", launch_sel, "a1111")
        root.locator(".sdp-tab[data-tab='settings']").click()
        page.wait_for_function(f"() => document.querySelector(\"{CURRENT_NOTEBOOK} {settings_sel}\").value === 'a1111'")
        saved = (lab_server.storage / ".sdpanel" / "settings.json").read_text()
        assert '"webui": "a1111"' in saved
    finally:
        _pick(root, "settings", settings_sel, "comfyui")  # later tests expect the default
        page.wait_for_function(f"() => document.querySelector(\"{CURRENT_NOTEBOOK} {settings_sel}\").value === 'comfyui'")


OFFLINE_SOURCES = ("import os\n"
                   "os.environ['SDPANEL_CIVITAI_BASE_URL'] = 'https://civitai.invalid'\n"
                   "os.environ['SDPANEL_HF_BASE_URL'] = 'https://huggingface.invalid'")


def test_models_first_open_offline_is_calm_and_presets_show(page: Any, lab_server: LabServer) -> None:
    """Offline first open: a notice (not a red alarm) with the one network wording; the
    presets show and can be told apart; each sub-tab's field says what it takes; the
    Download bar is above the cards, in view."""
    page.set_viewport_size({"width": 1400, "height": 900})
    root = _panel(page, lab_server, "models-offline.ipynb",
                  [OFFLINE_SOURCES, "import sdpanel.panels\np = sdpanel.panels.Panel()\np.active_tab = 'models'\np"])
    notice = root.locator(".sdp-md-status .sdp-md-notice")
    notice.wait_for(timeout=60_000)
    assert "no network / cannot resolve civitai.invalid" in notice.inner_text()
    assert root.locator(".sdp-md-error, [role='alert']").count() == 0
    screenshot(root, "newcomer-models-first-open-offline.png")
    query = root.locator("input.sdp-md-q")
    assert query.get_attribute("placeholder") == "Search models, #tag, @creator, or paste a link"
    query.fill("anime")
    notice.locator("button[data-act='presets']").click()
    grid = root.locator(".sdp-md-grid")
    page.wait_for_function(f"() => document.querySelector(\"{CURRENT_NOTEBOOK} .sdp-md-grid\").childElementCount >= 15",
                           timeout=30_000)
    assert query.input_value() == "" and query.get_attribute("placeholder") == "Filter presets by name"
    # Every preset name is shown whole (two lines before any cut) and the tiles say the kind.
    cut = grid.locator(".sdp-md-name").evaluate_all("els => els.filter(e => e.scrollHeight > e.clientHeight + 1).map(e => e.textContent)")
    assert not cut, f"preset names cut: {cut}"
    tiles = set(grid.locator(".sdp-md-ph").all_inner_texts())
    assert {"Checkpoint", "ControlNet", "ADetailer"} <= tiles and not tiles & {"CK", "CN", "AD"}
    canny = grid.locator(".sdp-md-card", has_text="Canny")
    assert "size unknown" in canny.inner_text() and "size ?" not in grid.inner_text()
    assert canny.get_attribute("title").startswith("ControlNet v1.1 SD 1.5 Canny (fp16)")
    grid.locator(".sdp-md-card", has_text="Stable Diffusion XL base 1.0").locator(".sdp-md-check").check()
    bar = root.locator(".sdp-md-selbar")
    bar.wait_for()
    bar_box, grid_box = bar.bounding_box(), grid.bounding_box()
    assert bar_box["y"] < grid_box["y"], "the Download bar must sit above the cards"
    assert 0 <= bar_box["y"] < 900, "the Download bar must be in view"
    _light_dark(page, root, "newcomer-models-presets-offline")
    root.locator(".sdp-md-subtab[data-sub='hf']").click()
    page.wait_for_function(f"() => document.querySelector(\"{CURRENT_NOTEBOOK} input.sdp-md-q\").placeholder.startsWith('Hugging Face repo id')")
    side = _in_sidebar(page, "models")
    side.locator(".sdp-md-subtab[data-sub='presets']").click()
    side.locator(".sdp-md-card").first.wait_for()
    screenshot(page.locator("#sdpanel-sidebar"), "newcomer-models-presets-sidebar.png")


@pytest.fixture
def sdpanel_lab(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """`sdpanel lab` itself (what `make lab` runs), on a checkout of our own (so its working
    copy lands in tmp_path), with fresh Jupyter dirs: no test page config helps it."""
    checkout = tmp_path / "checkout"
    (checkout / "notebook").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text('[project]\nname = "sdpanel"\n')
    (checkout / "notebook" / "SDPanel.ipynb").write_text(notebook_text())
    home, port, token = tmp_path / "home", free_port(), "newcomer-lab-token"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / "ipython"),
           "JUPYTER_PLATFORM_DIRS": "1", "SDPANEL_STORAGE": str(tmp_path / "storage"),
           "PYTHONPATH": str(REPO)}
    code = ("import pathlib, sdpanel.platforms as P\n"
            f"P.checkout_dir = lambda: pathlib.Path({str(checkout)!r})\n"
            "from sdpanel.cli import main\n"
            f"main(['lab', '--no-browser', '--port', '{port}', '--', '--IdentityProvider.token={token}',"
            " '--LabApp.expose_app_in_browser=True', '--ServerApp.port_retries=0'])")
    log = tmp_path / "lab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(180):
            if proc.poll() is not None:
                raise AssertionError(f"sdpanel lab exited: {log.read_text()[-2000:]}")
            try:
                req = urllib.request.Request(url + "api/status", headers={"Authorization": f"token {token}"})
                json.loads(urllib.request.urlopen(req, timeout=5).read())
                break
            except OSError:
                time.sleep(0.5)
        yield f"{url}?token={token}", checkout, log  # / redirects to the default URL
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_sdpanel_lab_opens_a_working_copy_without_news_notice(page: Any, sdpanel_lab: tuple[str, Path, Path]) -> None:
    url, checkout, log = sdpanel_lab
    page.goto(url)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started", timeout=90_000)
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=60_000)
    # The working copy is open, not the committed notebook.
    assert page.evaluate("() => window.jupyterapp.shell.currentWidget.context.path") == "SDPanel.ipynb"
    assert (checkout / "workspace" / "SDPanel.ipynb").is_file()
    # Cell sources are hidden: five titles, not 88 lines of Setup code.
    # JupyterLab renders cells in turn: wait for all five, not only the first.
    expect(page.locator(".jp-NotebookPanel .jp-InputPlaceholder")).to_have_count(5, timeout=30_000)
    titles = page.locator(".jp-NotebookPanel .jp-InputPlaceholder").all_inner_texts()
    assert len(titles) == 5 and titles[0].strip().startswith("#@title 1. Setup"), titles
    assert page.locator(".jp-NotebookPanel .jp-Cell .cm-editor:visible").count() == 0
    # No "Would you like to receive official Jupyter news?" toast: the plugin is off.
    assert page.evaluate("() => window.jupyterapp.hasPlugin('@jupyterlab/apputils-extension:announcements')") is False
    page.wait_for_timeout(3000)
    toasts = " ".join(page.locator(".Toastify__toast").all_inner_texts())
    assert "news" not in toasts.lower(), toasts
    screenshot(page, "newcomer-make-lab.png")
    if REPO in Path(sys.prefix).resolve().parents:  # a checkout's own .venv (make lab, CI)
        assert "require is not defined" not in log.read_text(), "node tracebacks in the server log"


def test_settings_tab_sets_what_a_user_needs(page: Any, lab_server: LabServer) -> None:
    """Tokens (masked, kept only in the session's secret store), storage, downloads at once,
    connections, NSFW and sound can be set; the table has labels, never raw keys or ids."""
    page.set_viewport_size({"width": 1400, "height": 1400})
    root = _panel(page, lab_server, "settings.ipynb",
                  ["import os\nos.environ.pop('CIVITAI_TOKEN', None)",
                   "import sdpanel.panels\np = sdpanel.panels.Panel()\np.active_tab = 'settings'\np"])
    tab = root.locator(".sdp-tab[data-tab='settings']")
    tab.click()
    form = root.locator(".sdp-settings-form").first
    settings_json = lab_server.storage / ".sdpanel" / "settings.json"
    before = settings_json.read_text() if settings_json.exists() else ""
    try:
        # Labels, not ids: the WebUI picker says what the Launch tab says.
        assert root.locator("select[data-key='webui'] option:checked").inner_text() == "ComfyUI"
        for key, value in (("max_concurrent_downloads", "5"), ("connections_per_file", "8")):
            root.locator(f"input[data-key='{key}']").fill(value)
            root.locator(f"input[data-key='{key}']").press("Tab")
            page.wait_for_function(f"() => document.querySelector(\"{CURRENT_NOTEBOOK} tr[data-key='{key}'] td\")?.textContent === '{value}'")
        root.locator("input[data-key='nsfw']").click()  # it turns on when Python confirms
        page.wait_for_function(f"() => document.querySelector(\"{CURRENT_NOTEBOOK} tr[data-key='nsfw'] td\")?.textContent === 'on'")
        root.locator("input[data-key='audio_muted']").click()
        page.wait_for_function(f"() => document.querySelector(\"{CURRENT_NOTEBOOK} tr[data-key='audio_muted'] td\")?.textContent === 'on'")
        saved = json.loads(settings_json.read_text())
        assert saved["max_concurrent_downloads"] == 5 and saved["connections_per_file"] == 8
        assert saved["nsfw"] is True and saved["audio_muted"] is True
        # A token: a password field, set for the session, never saved, never in a trait.
        token = root.locator("input[data-key='CIVITAI_TOKEN']")
        assert token.get_attribute("type") == "password"
        token.fill("newcomer-civitai-secret-123456")
        token.press("Enter")
        page.wait_for_function(f"() => document.querySelector(\"{CURRENT_NOTEBOOK} tr[data-key='CIVITAI_TOKEN'] td\")?.textContent === 'set (panel)'")
        assert token.input_value() == ""
        assert "newcomer-civitai-secret" not in settings_json.read_text()
        assert "newcomer-civitai-secret" not in root.inner_html()
        # Every row of the table has a label: no snake_case or UPPERCASE keys shown.
        heads = root.locator(".sdp-kv th").all_inner_texts()
        assert heads and not [t for t in heads if "_" in t], heads
        assert "CivitAI token" in heads and "Downloads at the same time" in heads
        form.scroll_into_view_if_needed()
        _light_dark(page, root, "newcomer-settings")
        side = _in_sidebar(page, "settings")
        side.locator("input[data-key='CIVITAI_TOKEN']").wait_for()
        screenshot(page.locator("#sdpanel-sidebar"), "newcomer-settings-sidebar.png")
    finally:
        # The session's lab is shared by later tests: restore the store's settings.
        if before:
            settings_json.write_text(before)
        elif settings_json.exists():
            settings_json.unlink()


OVERFLOW = """root => {
  // Elements sticking out at the right of the Panel (cut off in the sidebar), ignoring
  // what sits inside its own scroll box (a log, a wide table meant to scroll).
  const edge = root.getBoundingClientRect().right + 1;
  const out = [];
  for (const el of root.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (!r.width || r.right <= edge) continue;
    let p = el.parentElement, boxed = false;
    while (p && p !== root) {
      const s = getComputedStyle(p);
      if (/(auto|scroll|hidden)/.test(s.overflowX) && p.getBoundingClientRect().right <= edge) { boxed = true; break; }
      p = p.parentElement;
    }
    if (!boxed) out.push(`${el.tagName.toLowerCase()}.${[...el.classList].join('.')} ${Math.round(r.right - edge)}px`);
  }
  return out.slice(0, 8);
}"""


@pytest.mark.parametrize("width", [250, 320])
def test_every_tab_fits_the_narrow_sidebar(page: Any, lab_server: LabServer, width: int) -> None:
    """In the sidebar at 250-320 px: every tab button is visible (the bar wraps instead of
    scrolling away) and no tab's content is cut off at the right."""
    page.set_viewport_size({"width": 1400, "height": 1400})
    _panel(page, lab_server, f"narrow-{width}.ipynb", ["import sdpanel.panels\nsdpanel.panels.Panel()"])
    side = _in_sidebar(page, "models")
    set_sidebar_width(page, width)
    bar = side.locator(".sdp-tabs")
    bar_box = bar.bounding_box()
    for tab in side.locator(".sdp-tab").all():
        box = tab.bounding_box()
        assert box["x"] >= bar_box["x"] - 1 and box["x"] + box["width"] <= bar_box["x"] + bar_box["width"] + 1, \
            f"tab {tab.inner_text()!r} is outside the tab bar"
    for tab_id in side.locator(".sdp-tab").evaluate_all("els => els.map(e => e.dataset.tab)"):
        side.locator(f".sdp-tab[data-tab='{tab_id}']").click()
        side.locator(".sdp-body > *").first.wait_for()
        page.wait_for_timeout(300)  # the tab's first paint
        cut = side.evaluate(OVERFLOW)
        screenshot(page.locator("#sdpanel-sidebar"), f"newcomer-sidebar-{width}-{tab_id}.png")
        assert not cut, f"{tab_id} at {width} px: cut off at the right: {cut}"


def test_storage_tab_on_an_empty_store(page: Any, lab_server: LabServer, tmp_path: Path) -> None:
    """The disk bar's free part matches "N free of M" (GiB, as the CLI says), no "Kinds"
    heading without kinds under it, and the empty file table says so."""
    store = tmp_path / "empty-store"
    page.set_viewport_size({"width": 1400, "height": 1300})
    root = _panel(page, lab_server, "storage-empty.ipynb",
                  [f"import os\nos.environ['SDPANEL_STORAGE'] = {str(store)!r}",
                   "import sdpanel.panels\np = sdpanel.panels.Panel()\np.active_tab = 'storage'\np"])
    disk = root.locator("[data-disk^='Store']")
    disk.wait_for(timeout=60_000)
    usage = shutil.disk_usage(store)
    label = disk.locator(".sdp-disk-free").inner_text()
    assert label.endswith("GiB") and "GB" not in label.replace("GiB", ""), label
    bar = disk.locator(".sdp-disk-bar").bounding_box()["width"]
    filled = sum(s.bounding_box()["width"] for s in disk.locator(".sdp-disk-bar > span").all())
    free_drawn = 1 - filled / bar
    assert abs(free_drawn - usage.free / usage.total) < 0.02, (free_drawn, usage.free / usage.total)
    assert root.locator(".sdp-st-row:has(.sdp-st-lbl)").filter(has_text="Kinds").is_hidden()
    files = root.locator("details:has(> summary:text('Model files'))")
    assert "No model files yet" in files.locator("tbody tr.sdp-st-empty").inner_text()
    _light_dark(page, root, "newcomer-storage-empty")
    side = _in_sidebar(page, "storage")
    side.locator("[data-disk^='Store']").wait_for()
    screenshot(page.locator("#sdpanel-sidebar"), "newcomer-storage-sidebar.png")


STYLE = "el => { const s = getComputedStyle(el); return [s.backgroundColor, s.opacity, s.cursor]; }"


def test_generate_without_a_webui_says_start_one_first(page: Any, lab_server: LabServer) -> None:
    """No WebUI and no built-in engine (its Python points nowhere): Generate is off with one
    sentence at the button, not a click answered with field errors; secondary buttons do
    not look disabled (only disabled ones do)."""
    page.set_viewport_size({"width": 1400, "height": 1100})
    root = _panel(page, lab_server, "generate-none.ipynb",
                  ["import os\nos.environ.pop('SDPANEL_GENERATE_BACKENDS', None)\n"
                   "os.environ['SDPANEL_ENGINE_PYTHON'] = '/nonexistent/python'  # no built-in engine either",
                   "import sdpanel.panels\np = sdpanel.panels.Panel()\np.active_tab = 'generate'\np"])
    hint = root.locator("[data-hint='no-webui']")
    hint.wait_for(timeout=60_000)
    assert hint.inner_text().startswith("Start a WebUI first")
    go = root.locator("button[data-act='generate']")
    assert go.is_disabled()
    go.click(force=True)  # a click anyway: nothing is queued, no field errors appear
    page.wait_for_timeout(500)
    assert root.locator(".sdp-gen-status.sdp-gen-bad").count() == 0
    assert root.locator(".sdp-gen-err:visible, .sdp-field-error:visible").count() == 0
    for theme in ("JupyterLab Light", "JupyterLab Dark"):
        set_theme(page, theme)
        secondary = root.locator(".sdp-gen-h button.sdp-btn:not([disabled])").first
        enabled, disabled = secondary.evaluate(STYLE), go.evaluate(STYLE)
        assert enabled[1] == "1" and float(disabled[1]) < 1, (enabled, disabled)
        assert enabled[0] != disabled[0] and disabled[2] == "not-allowed", (enabled, disabled)
        grey = root.evaluate("el => { const d = document.createElement('div'); d.style.background = 'var(--jp-layout-color3)';"
                             " el.append(d); const c = getComputedStyle(d).backgroundColor; d.remove(); return c; }")
        assert enabled[0] != grey, f"secondary buttons are the disabled-looking grey in {theme}"
    set_theme(page, "JupyterLab Light")
    _light_dark(page, root, "newcomer-generate-no-webui")
    side = _in_sidebar(page, "generate")
    side.locator("[data-hint='no-webui']").wait_for()
    screenshot(page.locator("#sdpanel-sidebar"), "newcomer-generate-no-webui-sidebar.png")


def test_later_cells_point_at_the_panel_instead_of_copying_it(page: Any, lab_server: LabServer, tmp_path: Path) -> None:
    """Cells 4 and 5 after a Panel: one Panel in the notebook, opened on the last cell's tab,
    and a one-line pointer under each later cell."""
    setup = f"import os\nos.environ['SDPANEL_WEBUIS_DIR'] = {str(tmp_path / 'webuis')!r}"
    page.set_viewport_size({"width": 1400, "height": 1000})
    _panel(page, lab_server, "one-panel.ipynb",
           [setup, "import sdpanel.cells\nsdpanel.cells.launch()", "sdpanel.cells.storage()"])
    nb = page.locator(CURRENT_NOTEBOOK)
    nb.locator(".sdpanel-pointer").first.wait_for(timeout=60_000)
    assert nb.locator(".sdpanel-root").count() == 1
    pointer = nb.locator(".sdpanel-pointer").inner_text()
    assert "See the sdpanel Panel above: its Storage tab is open now." in pointer
    nb.locator(".sdp-tab.sdp-active[data-tab='storage']").wait_for()
    screenshot(nb, "newcomer-one-panel.png")
