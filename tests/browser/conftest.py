"""Fixtures for browser tests (see lab.py for the pieces; other suites may import them).

- ``lab_server``: one real JupyterLab per session (free port, token auth, sdpanel lab +
  server extensions, isolated Jupyter dirs and storage, root dir = a temp folder holding a
  copy of notebook/).
- ``browser``: Debian's Chromium through Playwright (no browser download).
- ``page``: a fresh page per test (1400x900); its console errors are in ``page.sdp_console``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .lab import CHROMIUM, REPO, LabServer, copy_notebook_dir, launch_browser, start_lab

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; no browser download needed)"
    if not (REPO / "sdpanel/labextension/package.json").exists() and shutil.which("npm") is None:
        return "the front end is not built and npm is missing (npm run build)"
    return None


def pytest_report_header(config: pytest.Config) -> str:
    """Which Chromium ran: rendering differs between versions (issue 19 showed an NSFW
    blur test passing on 156 and failing on 150), so every run's log names it."""
    import subprocess

    try:
        out = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=20)
        version = (out.stdout or out.stderr).strip().splitlines()[-1]
    except (OSError, subprocess.SubprocessError, IndexError):
        version = "not found"
    return f"browser: {CHROMIUM}: {version}"


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    why = _missing()
    if why:
        pytest.skip(why)
    base = tmp_path_factory.mktemp("lab")
    root = copy_notebook_dir(base / "root") if (REPO / "notebook").is_dir() else None
    server = start_lab(base, root)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    why = _missing()
    if why:
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch_browser(pw)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.sdp_console = []  # type: ignore[attr-defined]
    pg.on("console", lambda m: pg.sdp_console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)  # type: ignore[attr-defined]
    # Which URL a "Failed to load resource" console error was about (the console text omits it).
    pg.on("response", lambda r: pg.sdp_console.append(f"http {r.status}: {r.url}") if r.status >= 400 else None)  # type: ignore[attr-defined]
    pg.set_default_timeout(30_000)
    try:
        yield pg
    finally:
        context.close()
        # Each test's kernels go with it: a kernel left running keeps the store's download
        # queue (its journal lock) and WebUI state, which the next test's kernel would meet.
        if "lab_server" in request.fixturenames:
            request.getfixturevalue("lab_server").shutdown_kernels()
