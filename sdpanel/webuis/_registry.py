"""The WebUI registry: launch data from ``configs/webui_launch.json`` (same ids as the
folder tables in ``configs/webuis.json``)."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdpanel._configs import load_config

from ._process import LaunchSpec

__all__ = ["Extension", "WebUIInfo", "launch_spec", "tunnel_table", "webui_info", "webui_python",
           "webuis"]


@dataclass(frozen=True)
class Extension:
    name: str
    url: str
    ref: str | None = None
    commit: str | None = None


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


def tunnel_table() -> dict[str, dict[str, Any]]:
    return {k: v for k, v in _raw()["tunnels"].items() if not k.startswith("$")}


def webui_python(webui_dir: Path) -> str:
    """The WebUI's own venv interpreter when it has one, else this interpreter."""
    for name in ("venv", ".venv"):
        py = webui_dir / name / "bin" / "python"
        if py.exists():
            return str(py)
    return sys.executable


def launch_spec(webui: str, webui_dir: str | Path, *, name: str | None = None, port: int | None = None,
                gpu: int | None = None, args: str | list[str] = "", cpu: bool = False,
                env: dict[str, str] | None = None, ready_timeout: float = 600.0) -> LaunchSpec:
    """The command line and probe to launch ``webui`` from ``webui_dir``.
    ``gpu`` None and ``cpu`` True: the WebUI's CPU flags are added."""
    info = webui_info(webui)
    wd = Path(webui_dir).resolve()
    python = webui_python(wd)
    argv = [python if a == "{python}" else a for a in info.launch]
    extra = shlex.split(args) if isinstance(args, str) else list(args)
    argv += [a for a in info.default_args if a not in extra]
    if cpu:
        argv += [a for a in info.cpu_args if a not in extra]
    argv += extra
    return LaunchSpec(name=name or info.id, webui_dir=wd, argv=argv,
                      port=info.port if port is None else port, probe=info.probe, gpu=gpu,
                      env=dict(env or {}), ready_timeout=ready_timeout)
