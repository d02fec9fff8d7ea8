"""Cell 1, Setup: get sdpanel into the kernel (standard library only), then run
``sdpanel.cells.setup()``.

Where sdpanel comes from, first match wins:
1. it is already importable (installed, or the kernel's cwd is the checkout);
2. the notebook sits in a checkout (a ``pyproject.toml`` named sdpanel in the cwd or a
   parent): the checkout goes on ``sys.path`` (and PYTHONPATH for child processes). That is
   instant and offline; ``pip install -e`` takes seconds and needs the build toolchain, so it
   is used only when the checkout's dependencies are missing;
3. ``SDPANEL_PACKAGE_URL`` (environment, or the variable in the cell): a wheel / sdist URL;
4. ``pip install`` from ``SDPANEL_GIT_URL``.
A pip install that cannot write site-packages goes to ``--target`` in the first writable
place found, put on ``sys.path``.
"""

from __future__ import annotations

from nbformat import NotebookNode

from ._generator import code_cell

ORDER = 1

SOURCE = r'''#@title 1. Setup: install sdpanel, prepare storage and tools
SDPANEL_PACKAGE_URL = ""  #@param {type:"string"}
SDPANEL_GIT_URL = "git+https://github.com/sdpanel/sdpanel.git"

import importlib, importlib.util, os, subprocess, sys, sysconfig, tempfile
from pathlib import Path


def _sdpanel_checkout():
    here = Path.cwd().resolve()
    for folder in [here, *here.parents][:4]:
        pyproject = folder / "pyproject.toml"
        try:
            if pyproject.is_file() and 'name = "sdpanel"' in pyproject.read_text():
                return folder
        except OSError:
            pass
    return None


def _writable_dir():
    for place in (sysconfig.get_paths()["purelib"], Path.cwd(), Path.home(), tempfile.gettempdir()):
        if os.access(place, os.W_OK):
            return Path(place)
    raise RuntimeError("sdpanel setup: no writable folder found for the package")


def _add_path(folder):
    folder = str(folder)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if folder not in parts:  # child processes (CLI, daemons) find it too
        os.environ["PYTHONPATH"] = os.pathsep.join([folder, *parts])
    importlib.invalidate_caches()


def _pip_install(*spec):
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *spec]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 and not os.access(sysconfig.get_paths()["purelib"], os.W_OK):
        target = _writable_dir() / "sdpanel-site"
        done = subprocess.run([*cmd, "--target", str(target)], capture_output=True, text=True)
        if done.returncode == 0:
            _add_path(target)
    importlib.invalidate_caches()
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        print("pip install failed: " + " | ".join(tail))
    return done.returncode == 0


def _get_sdpanel():
    checkout = _sdpanel_checkout()
    spec = importlib.util.find_spec("sdpanel")
    if spec is None and checkout is not None:
        _add_path(checkout)
        spec = importlib.util.find_spec("sdpanel")
        where = f"checkout {checkout} (on sys.path)"
    elif spec is not None:
        where = f"installed at {Path(spec.origin).parent}"
    if spec is not None:
        try:
            importlib.import_module("sdpanel.cells")
            return where
        except ImportError as exc:  # a dependency is missing: install the checkout
            if checkout is None:
                raise
            print(f"installing the checkout's dependencies ({exc.name} missing)")
            if _pip_install("-e", str(checkout)):
                return f"{where} (pip install -e)"
    url = os.environ.get("SDPANEL_PACKAGE_URL") or SDPANEL_PACKAGE_URL
    if url and _pip_install(url):
        return f"package {url}"
    git_url = os.environ.get("SDPANEL_GIT_URL") or SDPANEL_GIT_URL
    if _pip_install(git_url):
        return f"git {git_url}"
    raise RuntimeError(
        "sdpanel setup: could not get sdpanel. Open this notebook from a sdpanel checkout, "
        "or set SDPANEL_PACKAGE_URL to a wheel/archive URL, or check the network"
    )


_source = _get_sdpanel()
import sdpanel.cells

print(f"sdpanel {sdpanel.__version__} from {_source}")
sdpanel.cells.setup()
'''


def build() -> NotebookNode:
    return code_cell("cell-setup", SOURCE)
