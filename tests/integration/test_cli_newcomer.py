"""CLI verbs a newcomer reaches for first: `sdpanel storage` alone prints the report, and
`sdpanel stop aria2` stops the detached download daemon (which outlives kernels and
JupyterLab on purpose). Real aria2c, real CLI in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from sdpanel.downloads import Aria2Daemon
from sdpanel.runtime import get_runtime

REPO = Path(__file__).resolve().parents[2]


def _cli(*argv: str, storage: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SDPANEL_STORAGE": str(storage),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "sdpanel", *argv], capture_output=True, text=True,
                          env=env, timeout=120)


def test_storage_without_an_action_prints_the_report(tmp_path: Path) -> None:
    store = tmp_path / "store"
    done = _cli("storage", storage=store)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Store {store}: ")
    assert done.stdout == _cli("storage", "report", storage=store).stdout


@pytest.mark.skipif(shutil.which("aria2c") is None, reason="aria2c is not installed")
def test_stop_aria2_stops_the_download_daemon(tmp_path: Path) -> None:
    store = tmp_path / "store"
    daemon = Aria2Daemon(store)
    get_runtime().submit(daemon.ensure()).wait(60)
    pid = daemon.running_pid()
    assert pid is not None and psutil.pid_exists(pid)
    try:
        done = _cli("stop", "aria2", storage=store)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"aria2: stopped (pid {pid})")
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert _cli("stop", "aria2", storage=store).stdout.strip() == "aria2: was not running"
    finally:
        get_runtime().submit(daemon.shutdown()).wait(30)
