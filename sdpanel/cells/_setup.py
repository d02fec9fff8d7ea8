"""Cell 1's work once sdpanel imports: platform, storage root, system tools, a summary."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from sdpanel._childenv import child_env

_APT_TIMEOUT_S = 600


@dataclass
class ToolCheck:
    name: str
    path: str | None
    message: str


@dataclass
class SetupReport:
    platform: Any
    storage_root: str
    free_bytes: int
    system: str = ""
    tools: list[ToolCheck] = field(default_factory=list)

    def summary(self) -> str:
        from sdpanel.storage import human_bytes

        lines = [
            f"platform  {self.platform.name} (WebUI reach: {self.platform.reach})",
            f"storage   {self.storage_root} ({human_bytes(self.free_bytes)} free)",
        ]
        if self.system:
            lines.append(f"system    {self.system}")
        lines += [f"{t.name:<9} {t.message}" for t in self.tools]
        return "\n".join(lines)


def _apt_install(package: str) -> tuple[bool, str]:
    """``apt-get install`` non-interactively; on failure refresh the lists once and retry
    (fresh Colab/Kaggle images often have stale or empty package lists)."""
    env = child_env({"DEBIAN_FRONTEND": "noninteractive"})
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
    err = ""
    for attempt in range(2):
        if attempt:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True,
                           text=True, timeout=_APT_TIMEOUT_S, check=False)
        try:
            done = subprocess.run(install, env=env, capture_output=True, text=True,
                                  timeout=_APT_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, str(exc)
        if done.returncode == 0:
            return True, ""
        lines = (done.stderr or done.stdout).strip().splitlines()
        err = lines[-1] if lines else f"exit {done.returncode}"
    return False, err


def ensure_aria2c(install: bool = True) -> ToolCheck:
    """Find aria2c, installing it with apt-get where we are root and apt exists. Without it
    downloads still work (pure-Python engine), only slower: say so, never fail."""
    fallback = "aria2c not found; downloads use the pure-Python engine"
    path = shutil.which("aria2c")
    if path:
        return ToolCheck("aria2c", path, path)
    if not install:
        return ToolCheck("aria2c", None, fallback)
    if shutil.which("apt-get") is None:
        return ToolCheck("aria2c", None, f"{fallback} (no apt-get here to install it)")
    if os.geteuid() != 0:
        return ToolCheck("aria2c", None,
                         f"{fallback} (not root: install the 'aria2' package to speed them up)")
    ok, err = _apt_install("aria2")
    path = shutil.which("aria2c")
    if ok and path:
        return ToolCheck("aria2c", path, f"{path} (installed with apt-get)")
    return ToolCheck("aria2c", None, f"{fallback} (apt-get install aria2 failed: {err})")


def setup(install_tools: bool = True) -> None:
    """Cell 1: detect the platform, create the storage skeleton, check/install system tools
    and print a short plain summary (headless and interactive alike). Returns nothing so
    the cell shows only the summary."""
    from sdpanel.settings import redact

    print(redact(prepare(install_tools).summary()))


def prepare(install_tools: bool = True) -> SetupReport:
    """The work of :func:`setup` without printing."""
    from sdpanel.platforms import detect_platform
    from sdpanel.storage import StorageRoot, free_bytes
    from sdpanel.sysmon import SystemMonitor, format_status

    platform = detect_platform()
    root = StorageRoot.at(platform.storage_root).ensure()
    report = SetupReport(platform=platform, storage_root=str(root.path),
                         free_bytes=free_bytes(root.path),
                         system=format_status(SystemMonitor(disk_path=root.path).sample()))
    report.tools.append(ensure_aria2c(install=install_tools))
    return report
