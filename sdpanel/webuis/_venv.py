"""Build the Python environment a WebUI runs in, and check that it can start the WebUI.

Order of work, each step logged through a :class:`StepLog`:

1. ``python -m venv`` from the base interpreter. When that interpreter already has torch
   (Colab, Kaggle ship CUDA torch in the system Python) the venv sees the system
   site-packages and keeps that torch instead of pulling ~3 GB again.
2. torch from the torch spec (setting ``webui_torch``, default from the registry), unless
   the host torch is kept.
3. The WebUI's requirements with the torch family filtered out and a constraints file that
   pins the torch actually installed, so no requirement can swap it (or pull a torchaudio
   that needs another torch).
4. Extra packages the registry names (ComfyUI 0.3.64 imports ``requests`` without listing it).

``uv`` is used when it is on PATH, pip otherwise. uv does not read pip's configuration, so
the find-links / index URLs pip is configured with are handed to it explicitly.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._git import StepError, StepLog

__all__ = ["TORCH_FAMILY", "VenvError", "VenvReport", "build_venv", "filter_requirements",
           "host_torch", "pip_install", "prepare_environment", "smoke_test", "torch_versions"]

TORCH_FAMILY = ("torch", "torchvision", "torchaudio")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class VenvError(RuntimeError):
    """A venv step failed; the message is one sentence of cause and fix, then log lines."""


@dataclass
class VenvReport:
    python: str
    torch: dict[str, str] = field(default_factory=dict)
    host_torch: bool = False
    installer: str = "pip"


def _name(line: str) -> str | None:
    line = line.split("#", 1)[0].strip()
    if not line or line.startswith("-"):
        return None
    m = _NAME.match(line)
    return m.group(1).lower().replace("_", "-") if m else None


def filter_requirements(text: str, drop: Sequence[str] = TORCH_FAMILY) -> str:
    """``text`` (a requirements file) without lines naming a package in ``drop``."""
    dropped = {d.lower() for d in drop}
    return "\n".join(line for line in text.splitlines() if _name(line) not in dropped) + "\n"


def _probe_torch_code() -> str:
    return ("import importlib.metadata as m\n"
            f"for n in {list(TORCH_FAMILY)!r}:\n"
            "    try: print(n, m.version(n))\n"
            "    except m.PackageNotFoundError: pass\n")


async def torch_versions(log: StepLog, python: str) -> dict[str, str]:
    """Installed versions of the torch family for ``python`` (absent ones left out)."""
    out = await log.run("reading the torch version", [python, "-c", _probe_torch_code()])
    pairs = (line.split() for line in out if line.strip())
    return {p[0]: p[1] for p in pairs if len(p) == 2 and p[0] in TORCH_FAMILY}


async def host_torch(log: StepLog, python: str) -> dict[str, str]:
    """The torch family the base interpreter already has (empty when none)."""
    found = await torch_versions(log, python)
    return found if "torch" in found else {}


def _pip_config_sources() -> list[str]:
    """pip's configured find-links / index URLs as uv arguments (uv ignores pip.conf)."""
    files = [Path("/etc/pip.conf"), Path("~/.config/pip/pip.conf").expanduser(),
             Path("~/.pip/pip.conf").expanduser()]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    cp = configparser.ConfigParser()
    cp.read([str(f) for f in files if f.is_file()])
    args: list[str] = []
    for section in ("global", "install"):
        if not cp.has_section(section):
            continue
        for url in cp.get(section, "find-links", fallback="").split():
            args += ["--find-links", url]
        for url in cp.get(section, "extra-index-url", fallback="").split():
            args += ["--extra-index-url", url]
    for url in os.environ.get("PIP_FIND_LINKS", "").split():
        args += ["--find-links", url]
    return args


async def pip_install(log: StepLog, python: str, args: Sequence[str], step: str,
                      cwd: Path | None = None) -> str:
    """``pip install args`` into ``python``'s environment (uv when present). Returns the
    installer used."""
    uv = shutil.which("uv")
    if uv:
        argv = [uv, "pip", "install", "--python", python, *_pip_config_sources(), *args]
    else:
        argv = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *args]
    await log.run(step, argv, cwd=cwd)
    return "uv" if uv else "pip"


def _fail(step: str, exc: StepError, fix: str) -> VenvError:
    lines = "\n".join(f"  | {x}" for x in exc.tail[-12:]) or "  (no output)"
    return VenvError(f"{step} failed (exit {exc.code}): {fix}. Last output:\n{lines}")


async def build_venv(venv_dir: Path, *, log: StepLog, requirements: Sequence[Path] = (),
                     torch_spec: Sequence[str] = ("torch", "torchvision"),
                     extra: Sequence[str] = (), base_python: str | None = None,
                     reuse_host_torch: bool = True, pip_args: Sequence[str] = (),
                     drop: Sequence[str] = ()) -> VenvReport:
    """Create ``venv_dir`` and install torch + ``requirements`` + ``extra`` into it.
    ``drop``: requirement names left out besides the torch family (the registry's
    ``requirements_drop``: pins that cannot go with the torch installed)."""
    base = base_python or getattr(sys, "_base_executable", sys.executable)
    kept = await host_torch(log, base) if reuse_host_torch else {}
    argv = [base, "-m", "venv", str(venv_dir)]
    if kept:
        argv.append("--system-site-packages")
        log.write(f"keeping the host's torch {kept['torch']} (the base Python has it)")
    try:
        await log.run("creating the venv", argv)
    except StepError as exc:
        raise _fail("creating the venv", exc, f"{base} cannot make a venv (install python3-venv)") from exc
    python = str(venv_dir / "bin" / "python")
    report = VenvReport(python=python, host_torch=bool(kept))
    try:
        if not kept and torch_spec:
            report.installer = await pip_install(log, python, [*torch_spec, *pip_args], "installing torch")
        report.torch = await torch_versions(log, python)
    except StepError as exc:
        raise _fail("installing torch", exc, f"pip could not install {' '.join(torch_spec)}; "
                    "set webui_torch to a torch this machine's package index has") from exc
    pins = venv_dir / "sdpanel-torch-constraints.txt"
    pins.write_text("".join(f"{n}=={v}\n" for n, v in report.torch.items()), encoding="utf-8")
    for req in requirements:
        if not req.is_file():
            continue
        filtered = venv_dir / f"sdpanel-{req.parent.name}-{req.name}"
        filtered.write_text(filter_requirements(req.read_text(encoding="utf-8", errors="replace"),
                                                (*TORCH_FAMILY, *drop)), encoding="utf-8")
        try:
            report.installer = await pip_install(log, python, ["-r", str(filtered), "-c", str(pins),
                                                               *pip_args], f"installing {req.name}",
                                                 cwd=req.parent)
        except StepError as exc:
            raise _fail(f"installing {req.name}", exc, "a requirement could not be installed; "
                        "read the lines below, fix the index or the requirement and install again") from exc
    if extra:
        try:
            await pip_install(log, python, [*extra, "-c", str(pins), *pip_args], "installing extra packages")
        except StepError as exc:
            raise _fail("installing extra packages", exc, f"pip could not install {' '.join(extra)}") from exc
    return report


async def smoke_test(log: StepLog, argv: Sequence[str], cwd: Path, what: str) -> None:
    """Run the WebUI's own self-test (ComfyUI: ``--quick-test-for-ci``); stop with one
    sentence and its last log lines when it cannot start."""
    try:
        await log.run(f"checking that {what} starts", list(argv), cwd=cwd)
    except StepError as exc:
        lines = "\n".join(f"  | {x}" for x in exc.tail[-12:]) or "  (no output)"
        missing = next((m.group(1) for x in reversed(exc.tail)
                        if (m := re.search(r"No module named '([^']+)'", x))), None)
        cause = (f"its Python lacks the module {missing!r}: install it into that venv "
                 "(or reinstall with --force)") if missing else \
            "read the lines below, fix the environment and install again"
        raise VenvError(f"{what} cannot start after the install (exit {exc.code}): {cause}. "
                        f"Last log lines:\n{lines}") from exc


async def prepare_environment(staging: Path, *, label: str, log: StepLog,
                              requirements: Sequence[str], extra: Sequence[str], torch_spec: str,
                              smoke: Sequence[str], python: str = "",
                              pip_args: Sequence[str] = (), drop: Sequence[str] = (),
                              packages: bool = True) -> list[str]:
    """The install's environment step, on the staging folder before the marker: the
    interpreter the ``webui_python`` setting names, else the package's own venv, else a
    venv built here; then the WebUI's start check. ``packages=False`` (the API's
    ``with_pip=False``) builds a bare venv the caller fills, so there is nothing to check
    yet: the note says the start check was skipped. Returns notes for the install result."""
    from ._registry import configured_python
    from ._relocate import find_venvs, fix_relocated_venv

    notes: list[str] = []
    venvs = [v for v in find_venvs(staging) if (v / "bin").is_dir()]
    if python:
        interpreter = configured_python(python)
        notes.append(f"runs on {interpreter} (the webui_python setting)")
    elif venvs:
        fix_relocated_venv(venvs[0])  # fixed again for its final place by finish_install
        interpreter = str(venvs[0] / "bin" / "python")
        notes.append(f"runs on the venv that came with it ({venvs[0].name}/)")
    elif not packages:
        log.write(f"{label} has no venv: building a bare one (installing without packages)")
        await build_venv(staging / "venv", log=log, torch_spec=(), reuse_host_torch=False)
        notes.append(f"built a bare venv/ (no packages); {label}'s start check skipped")
        return notes
    else:
        log.write(f"{label} has no venv: building one (torch: {torch_spec})")
        report = await build_venv(staging / "venv", log=log,
                                  requirements=[staging / r for r in requirements],
                                  torch_spec=torch_spec.split(), extra=extra, pip_args=pip_args,
                                  drop=drop)
        interpreter = report.python
        how = "the host's" if report.host_torch else report.installer
        notes.append(f"built venv/ with {how} torch "
                     + ", ".join(f"{k} {v}" for k, v in report.torch.items()))
    if smoke:
        await smoke_test(log, [interpreter if a == "{python}" else a for a in smoke], staging, label)
        notes.append(f"{label} passed its start check ({' '.join(smoke[1:])})")
    return notes
