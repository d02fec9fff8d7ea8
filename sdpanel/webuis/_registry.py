"""The WebUI registry: launch data from ``configs/webui_launch.json`` (same ids as the
folder tables in ``configs/webuis.json``)."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdpanel._configs import load_config

from ._process import LaunchSpec

__all__ = ["Extension", "NoWebUIPython", "WebUIInfo", "configured_python", "launch_spec", "prebuilt_repo", "tunnel_table", "webui_info", "webui_python",
           "webuis"]


@dataclass(frozen=True)
class Extension:
    """A custom node / extension: a git repository cloned into the extensions folder, or
    (``pip``) a package installed into the WebUI's Python, enabled by ``launch_args``, when
    the WebUI ships ``requirements`` (the file it names for that package)."""

    name: str
    url: str = ""
    ref: str | None = None
    commit: str | None = None
    pip: str = ""
    requirements: str = ""
    launch_args: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WebUIInfo:
    id: str
    label: str
    repository: str
    ref: str | None
    commit: str | None
    packages: list[str]
    launch: list[str]
    default_args: list[str]
    cpu_args: list[str]
    port: int
    probe: str
    ready_line: str
    api: str
    requirements: list[str]
    extensions_dir: str
    extensions: list[Extension] = field(default_factory=list)
    prebuilt: dict[str, str] = field(default_factory=dict)
    """{"package": zip, "venv": venv archive} in the registry's Hugging Face repo."""
    extra_requirements: list[str] = field(default_factory=list)
    """Packages the WebUI imports without listing them (ComfyUI 0.3.64: requests)."""
    requirements_drop: list[str] = field(default_factory=list)
    """Requirement names left out of ``requirements`` (Forge pins setuptools==69.5.1, which
    torch >= 2.6 refuses: it needs setuptools >= 77.0.3)."""
    torch: str = "torch torchvision"
    """The default torch spec (setting ``webui_torch`` overrides it)."""
    smoke_test: list[str] = field(default_factory=list)
    output_args: list[str] = field(default_factory=list)
    """Arguments that point the WebUI's output folder at the store's ({outputs})."""
    """argv of the WebUI's own start check, run after every install ({python} filled in)."""

    @property
    def launcher(self) -> str:
        """The script at the package root that starts it (main.py / launch.py)."""
        return next(a for a in self.launch if a.endswith(".py"))


def _raw() -> dict[str, Any]:
    return dict(load_config("webui_launch.json"))


def webuis() -> list[str]:
    return list(_raw()["webuis"])


def webui_info(webui: str) -> WebUIInfo:
    table = _raw()["webuis"]
    key = webui.strip().lower().replace("_", "-")
    if key not in table:
        raise ValueError(f"Unknown WebUI {webui!r}; choose one of: {', '.join(table)}")
    d = dict(table[key])
    exts = [Extension(**e) for e in d.pop("extensions", [])]
    d.pop("variants", None)
    return WebUIInfo(id=key, extensions=exts, **{k: v for k, v in d.items() if not k.startswith("$")})


def prebuilt_repo() -> str:
    """The Hugging Face repo holding the prebuilt packages and venv archives."""
    return str(_raw()["prebuilt_repo"])


def tunnel_table() -> dict[str, dict[str, Any]]:
    return {k: v for k, v in _raw()["tunnels"].items() if not k.startswith("$")}


class NoWebUIPython(RuntimeError):
    """No interpreter to run the WebUI with; the message says which setting or step fixes it."""


def configured_python(configured: str) -> str:
    """The interpreter the ``webui_python`` setting names (a venv folder or an interpreter)."""
    path = Path(configured).expanduser()
    py = path / "bin" / "python" if path.is_dir() else path
    if not py.is_file() or not os.access(py, os.X_OK):
        raise NoWebUIPython(f"The webui_python setting names {configured}, which is neither a venv "
                            "nor a Python interpreter: point it at one, or clear it to use the "
                            "WebUI's own venv")
    return str(py)


def webui_python(webui_dir: Path, configured: str = "", webui: str = "") -> str:
    """The interpreter that runs the WebUI: the ``webui_python`` setting when given, else the
    WebUI's own venv. Never sdpanel's own interpreter in silence: it lacks the WebUI's
    packages, and the crash it gives ("No module named 'PIL'") hides the cause."""
    if configured:
        return configured_python(configured)
    for name in ("venv", ".venv"):
        py = webui_dir / name / "bin" / "python"
        if py.exists():
            return str(py)
    raise NoWebUIPython(f"{webui_dir} has no venv (venv/ or .venv/): install it again "
                        f"(`sdpanel install {webui or webui_dir.name} --force`) to build one, or set "
                        "webui_python to an existing venv or Python interpreter")


def _not_given(defaults: list[str], extra: list[str]) -> list[str]:
    """``defaults`` without the options the user gave in ``extra`` (an option takes the
    values after it with it: ``--preview-method auto`` goes as a whole)."""
    given = {a.split("=", 1)[0] for a in extra if a.startswith("-")}
    out: list[str] = []
    skip = False
    for a in defaults:
        if a.startswith("-"):
            skip = a.split("=", 1)[0] in given
        if not skip:
            out.append(a)
    return out


def launch_spec(webui: str, webui_dir: str | Path, *, name: str | None = None, port: int | None = None,
                gpu: int | None = None, args: str | list[str] = "", cpu: bool = False,
                env: dict[str, str] | None = None, ready_timeout: float = 600.0,
                python: str = "", outputs: Path | None = None) -> LaunchSpec:
    """The command line and probe to launch ``webui`` from ``webui_dir``.
    ``gpu`` None and ``cpu`` True: the WebUI's CPU flags are added. ``python``: the
    ``webui_python`` setting; ``outputs``: the store's outputs folder (the WebUI saves there)."""
    info = webui_info(webui)
    wd = Path(webui_dir).resolve()
    interpreter = webui_python(wd, python, info.id)
    argv = [interpreter if a == "{python}" else a for a in info.launch]
    extra = shlex.split(args) if isinstance(args, str) else list(args)
    if outputs is not None:
        argv += _not_given([str(outputs) if a == "{outputs}" else a for a in info.output_args], extra)
    argv += _not_given(info.default_args, extra)
    from ._git import pip_extension_args  # _git imports Extension from here

    argv += _not_given(pip_extension_args(wd), extra)
    if cpu:
        argv += _not_given(info.cpu_args, extra)
    argv += extra
    return LaunchSpec(name=name or info.id, webui_dir=wd, argv=argv,
                      port=info.port if port is None else port, probe=info.probe, gpu=gpu,
                      env={**_venv_env(Path(interpreter)), **(env or {})}, ready_timeout=ready_timeout)


def _venv_env(python: Path) -> dict[str, str]:
    """A WebUI started on its venv has that venv's bin first on PATH (as sdAIgen does), so
    the tools and scripts it runs by name (pip, git hooks, accelerate) are the venv's."""
    venv = python.parent.parent
    if not (venv / "pyvenv.cfg").is_file():
        return {}
    return {"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", "VIRTUAL_ENV": str(venv)}
