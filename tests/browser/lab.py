"""Reusable pieces for browser tests: a real JupyterLab server with sdpanel's lab and
server extensions, and helpers that drive it with Playwright in Debian's Chromium.

The pytest fixtures in ``conftest.py`` wrap these; other suites (e.g. the notebook test
that runs SDPanel.ipynb cells 1-2 in the browser) can import them directly:

    from tests.browser.lab import LabServer, start_lab, open_lab, open_notebook, run_all_cells
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
CHROMIUM = "/usr/bin/chromium"
# The notebook in front (a restored workspace may hold hidden ones too).
CURRENT_NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_built() -> Path:
    """The built front end; runs ``npm run build`` once if it is missing."""
    labext = REPO / "sdpanel" / "labextension"
    if not (labext / "package.json").is_file() or not (REPO / "sdpanel/static/app.js").is_file():
        subprocess.run(["npm", "run", "build"], cwd=REPO, check=True)
    return labext


@dataclass
class LabServer:
    url: str  # http://127.0.0.1:<port>/
    token: str
    root_dir: Path
    home: Path  # isolated JUPYTER_* dirs, storage, logs
    storage: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(repr=False, default_factory=dict)

    def lab_url(self, path: str = "") -> str:
        # ?reset: start from an empty workspace, not the documents a previous test left open.
        tail = f"/tree/{path}" if path else ""
        return f"{self.url}lab{tail}?reset&token={self.token}"

    def api(self, path: str) -> Any:
        """GET ``<url><path>`` with the token; parsed JSON."""
        req = urllib.request.Request(self.url + path.lstrip("/"),
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def request(self, method: str, path: str) -> None:
        req = urllib.request.Request(self.url + path.lstrip("/"), method=method,
                                     headers={"Authorization": f"token {self.token}"})
        urllib.request.urlopen(req, timeout=10).close()

    def shutdown_kernels(self) -> None:
        """Stop every kernel (tests that must show something works without one)."""
        for kernel in self.api("api/kernels"):
            self.request("DELETE", f"api/kernels/{kernel['id']}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            # The server runs in its own session: signal its group so kernels stop too.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start_lab(base: Path, root_dir: Path | None = None, *, timeout: float = 90.0,
              extra_env: dict[str, str] | None = None) -> LabServer:
    """Start JupyterLab on a free loopback port with token auth, sdpanel's labextension
    (the checkout's build) and server extension, all Jupyter dirs isolated under ``base``.
    Kernels import sdpanel from the checkout (PYTHONPATH) and use ``base/storage``."""
    labext = ensure_built()
    home = base / "jupyter-home"
    config, data, runtime = home / "config", home / "data", home / "runtime"
    for d in (config / "labconfig", data, runtime):
        d.mkdir(parents=True, exist_ok=True)
    (config / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": {"sdpanel.server": True}}}))
    # No "receive Jupyter news?" toast over the screenshots.
    (config / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    ext_dir = home / "labextensions"
    ext_dir.mkdir(exist_ok=True)
    link = ext_dir / "sdpanel"
    if not link.exists():
        link.symlink_to(labext, target_is_directory=True)
    storage = base / "storage"
    storage.mkdir(exist_ok=True)
    if root_dir is None:
        root_dir = base / "root"
        root_dir.mkdir(exist_ok=True)
    token = secrets.token_hex(16)
    port = free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(data),
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTER_PLATFORM_DIRS": "1",
        "IPYTHONDIR": str(home / "ipython"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "SDPANEL_STORAGE": str(storage),
        "SDPANEL_HEADLESS": "0",  # a person (the test) is in front of this lab
        **(extra_env or {}),
    }
    log_path = home / "lab.log"
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ServerApp.open_browser=False",
        "--ServerApp.allow_root=True",  # CI containers run as root
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        f"--LabApp.extra_labextensions_path={ext_dir}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=root_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = LabServer(url=f"http://127.0.0.1:{port}/", token=token, root_dir=root_dir,
                       home=home, storage=storage, proc=proc, log_path=log_path, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{server.log()[-3000:]}")
        try:
            server.api("api/status")
            return server
        except OSError:
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f}s:\n{server.log()[-3000:]}")


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A notebook of code cells, with the python3 kernel named (no kernel dialog)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def copy_notebook_dir(dest: Path) -> Path:
    """A temp copy of the checkout's notebook/ folder (tests must not touch the real one)."""
    shutil.copytree(REPO / "notebook", dest, dirs_exist_ok=True)
    return dest


# ---- Playwright helpers (sync API) ------------------------------------------------------

def launch_browser(playwright: Any) -> Any:
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def open_lab(page: Any, server: LabServer, path: str = "", timeout: float = 60_000) -> None:
    """Load JupyterLab (optionally a document) and wait until the app has started."""
    page.goto(server.lab_url(path))
    page.wait_for_selector("#jp-main-dock-panel", timeout=timeout)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started", timeout=timeout)
    page.evaluate("() => window.jupyterapp.started")


def accept_kernel_dialog(page: Any, timeout: float = 3_000) -> bool:
    """A fresh JupyterLab may ask which kernel to start: accept its default."""
    button = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
    try:
        button.first.wait_for(timeout=timeout)
    except Exception:  # noqa: BLE001 - no dialog this time
        return False
    button.first.click()
    return True


def open_notebook(page: Any, server: LabServer, name: str, timeout: float = 60_000) -> None:
    """Open ``name`` (relative to the root dir) and wait for its kernel to be idle."""
    open_lab(page, server, name, timeout)
    accept_kernel_dialog(page)
    page.wait_for_selector(f"{CURRENT_NOTEBOOK} .jp-Cell", timeout=timeout)
    wait_kernel_idle(page, timeout)


def wait_kernel_idle(page: Any, timeout: float = 60_000) -> None:
    page.wait_for_function(
        """() => {
          const w = window.jupyterapp.shell.currentWidget;
          const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
          return !!k && k.status === 'idle';
        }""",
        timeout=timeout,
    )


def run_all_cells(page: Any, timeout: float = 120_000) -> None:
    """Run every cell of the current notebook and wait until none is queued or running."""
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(
        """() => {
          const prompts = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputArea-prompt')];
          return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent || ''));
        }""",
        timeout=timeout,
    )


def run_cells(page: Any, indices: list[int], timeout: float = 300_000) -> None:
    """Run the given cells (0-based) of the current notebook one after another, waiting for
    each to finish (its prompt gets a number)."""
    for index in indices:
        page.evaluate(
            """i => {
              const nb = window.jupyterapp.shell.currentWidget.content;
              nb.activeCellIndex = i;
              nb.deselectAll();
              return window.jupyterapp.commands.execute('notebook:run-cell');
            }""",
            index,
        )
        page.wait_for_function(
            """i => {
              const cell = window.jupyterapp.shell.currentWidget.content.widgets[i];
              const prompt = cell && cell.promptNode ? cell.promptNode.textContent || '' : '';
              return !!cell && cell.model.executionCount !== null && !prompt.includes('*');
            }""",
            arg=index,
            timeout=timeout,
        )


def cell_errors(page: Any) -> list[str]:
    """Text of error outputs in the current notebook (tracebacks), for assertion messages."""
    return list(page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").all_inner_texts())


def open_sidebar(page: Any) -> Any:
    """Activate the "SD" left-sidebar panel and return its locator."""
    page.evaluate("() => window.jupyterapp.shell.activateById('sdpanel-sidebar')")
    panel = page.locator("#sdpanel-sidebar")
    panel.wait_for(state="visible")
    return panel


def set_theme(page: Any, theme: str) -> None:
    """Switch JupyterLab's theme ("JupyterLab Light" / "JupyterLab Dark") and wait for it."""
    page.evaluate("t => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})", theme)
    light = "true" if "Light" in theme else "false"
    page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'")
    # Changing theme shows a splash screen until the new theme's CSS is in.
    page.wait_for_selector("#jupyterlab-splash", state="detached")


def screenshot(page_or_locator: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page_or_locator.screenshot(path=str(path))
    return path


def set_sidebar_width(page: Any, width: int) -> None:
    """Drag the left sidebar's splitter (as a user does) until the open sidebar is ``width``
    px wide: JupyterLab's default and narrowest useful size is about 250 px."""
    side = page.locator("#jp-left-stack")
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    for _ in range(3):
        box, hb = side.bounding_box(), handle.bounding_box()
        if not box or not hb or abs(box["width"] - width) <= 2:
            return
        x, y = hb["x"] + hb["width"] / 2, hb["y"] + 300
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + (width - box["width"]), y, steps=6)
        page.mouse.up()
