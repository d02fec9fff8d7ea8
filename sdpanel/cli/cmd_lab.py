"""``sdpanel lab [--port P] [--no-browser] [-- JUPYTER-ARGS]``: JupyterLab on the notebook,
with the sdpanel server extension and sidebar loaded even when not installed as a wheel."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import sdpanel

_PACKAGE_DIR = Path(sdpanel.__file__).resolve().parent


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("lab", help="start JupyterLab with the sdpanel notebook and sidebar")
    p.add_argument("--port", type=int, default=None, help="port (default: Jupyter's, 8888)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("jupyter_args", nargs=argparse.REMAINDER,
                   help="after --: arguments passed to JupyterLab as they are")
    p.set_defaults(func=run)


WORKSPACE = "workspace"  # in a checkout: the git-ignored folder `sdpanel lab` opens
ANNOUNCEMENTS = "@jupyterlab/apputils-extension:announcements"  # the "Jupyter news" notice


def notebook_dir() -> Path:
    """A folder holding a working copy of the notebook, never the committed one (running
    cells would save outputs into it and dirty the checkout). From a checkout:
    ``<checkout>/workspace/`` (git-ignored, and inside the checkout so the Setup cell finds
    it) with a copy of ``notebook/SDPanel.ipynb``; installed from a wheel: a folder in the
    platform's work dir holding a generated copy. An existing copy is kept: it may carry
    the user's edits (delete it to start afresh)."""
    from sdpanel.notebook import NOTEBOOK_NAME, write_notebook
    from sdpanel.platforms import checkout_dir, detect_platform

    root = checkout_dir()
    committed = root / "notebook" / NOTEBOOK_NAME if root is not None else None
    if root is not None and committed is not None and committed.is_file():
        folder = root / WORKSPACE
        if not (folder / NOTEBOOK_NAME).is_file():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(committed, folder / NOTEBOOK_NAME)
        return folder
    folder = Path(detect_platform().work_dir) / "sdpanel-notebook"
    if not (folder / NOTEBOOK_NAME).is_file():
        write_notebook(folder / NOTEBOOK_NAME)
    return folder


def quiet_lab_config() -> Path:
    """A Jupyter config folder (first on ``JUPYTER_CONFIG_PATH``) whose page config turns
    off JupyterLab's "receive Jupyter news?" notice: on a first start it covers the
    Panel, and the lab we launch is for the notebook. The user's own config is untouched."""
    from sdpanel.platforms import detect_platform
    from sdpanel.storage import StorageRoot

    folder = StorageRoot.at(detect_platform().storage_root).state_path("jupyter-config")
    page = folder / "labconfig" / "page_config.json"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(json.dumps({"disabledExtensions": {ANNOUNCEMENTS: True}}, indent=1) + "\n")
    return folder



def _labextension_installed() -> bool:
    from jupyter_core.paths import jupyter_path

    return any((Path(p) / "sdpanel" / "package.json").is_file()
               for p in jupyter_path("labextensions"))


def labextension_dir() -> Path | None:
    """A folder to put first on JupyterLab's extension path, or None when the installed
    wheel's copy is the one to use.

    From a checkout the fresh build wins: an editable install copies the labextension
    into ``share/jupyter`` once, and that copy goes stale at the next ``npm run build``.
    JupyterLab finds an extension as ``<path>/<name>/package.json`` and takes the first
    path that has it; the build writes to ``sdpanel/labextension``, so a link named
    ``sdpanel`` in our state folder points there."""
    from sdpanel.platforms import checkout_dir, detect_platform
    from sdpanel.storage import StorageRoot

    built = _PACKAGE_DIR / "labextension"
    if not (built / "package.json").is_file():
        return None
    if checkout_dir() is None and _labextension_installed():
        return None
    link = StorageRoot.at(detect_platform().storage_root).state_path("labextensions", "sdpanel")
    if link.is_symlink() and link.resolve() != built:
        link.unlink()
    if not link.exists():
        link.symlink_to(built, target_is_directory=True)
    return link.parent


def lab_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The JupyterLab command line and environment ``sdpanel lab`` runs."""
    from sdpanel.notebook import NOTEBOOK_NAME

    folder = notebook_dir()
    argv = [
        sys.executable, "-m", "jupyterlab",
        f"--ServerApp.root_dir={folder}",
        f"--LabApp.default_url=/lab/tree/{NOTEBOOK_NAME}",
        # Enabled here too: an editable install or a bare checkout has no
        # etc/jupyter config file enabling it.
        "--ServerApp.jpserver_extensions=sdpanel.server=True",
    ]
    ext = labextension_dir()
    if ext is not None:
        argv.append(f"--LabApp.extra_labextensions_path={ext}")
    if args.port is not None:
        argv.append(f"--ServerApp.port={args.port}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")  # containers and hosted GPUs (RunPod, Vast) run as root
    if args.no_browser:
        argv.append("--ServerApp.open_browser=False")
    extra = list(args.jupyter_args or [])
    argv += extra[1:] if extra[:1] == ["--"] else extra
    env = dict(os.environ)
    quiet = str(quiet_lab_config())
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
        [quiet, *[p for p in env.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if p and p != quiet]])
    # Kernels and the server import sdpanel from this same place (a bare checkout too).
    source = str(_PACKAGE_DIR.parent)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([source, *[p for p in paths if p != source]])
    return argv, env


def run(args: argparse.Namespace) -> int:
    argv, env = lab_command(args)
    print(f"starting JupyterLab on {notebook_dir()}", flush=True)
    if os.name == "posix":
        # Become JupyterLab: a signal sent to `sdpanel lab` (SIGTERM from a supervisor,
        # Ctrl+C) then reaches the server itself instead of orphaning a child.
        os.execve(argv[0], argv, env)
    return subprocess.call(argv, env=env)
