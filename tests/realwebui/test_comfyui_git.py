"""The real ComfyUI installed from a git repository with no venv and no webui_python
setting, so sdpanel builds the venv itself (registry requirements, the test torch, the
registry's extras), runs the start check, then the process lifecycle a user meets:
`launch` without --wait, a rejected flag, `stop`, the same port again. Its own ComfyUI
process (the module's), separate from the session's package install."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdpanel.webuis import installed_info
from sdpanel.webuis._process import port_free
from tests.fixtures.comfy_live import TAG, Comfy, free_port, launch, new_comfy


@pytest.fixture(scope="module")
def git_comfy(tmp_path_factory: pytest.TempPathFactory, comfy_repo: Path) -> Iterator[Comfy]:
    c = new_comfy(tmp_path_factory.mktemp("comfy-git"), python=None)
    c.install_out = c.cli("install", "comfyui", "--from", f"file://{comfy_repo}#{TAG}", "--no-extensions",
                          timeout=1800).stdout
    try:
        yield c
    finally:
        c.cli("stop", "comfyui", check=False)


def _listening(port: int) -> bool:
    return not port_free(port)


def test_git_install_builds_a_venv_that_starts(git_comfy: Comfy) -> None:
    info = installed_info(git_comfy.webui_dir)
    assert info and info["method"] == "git" and info["version"] == "0.3.64" and len(info["commit"]) == 40
    out = git_comfy.install_out
    assert "built venv/ with pip torch torch 2.14.1, torchvision 0.29.1" in out, out
    assert "passed its start check" in out
    py = git_comfy.webui_dir / "venv" / "bin" / "python"
    assert py.exists()
    # requests (imported by 0.3.64, not listed) came from the registry's extras; no torchaudio.
    pins = (git_comfy.webui_dir / "venv" / "sdpanel-torch-constraints.txt").read_text()
    assert pins == "torch==2.14.1\ntorchvision==0.29.1\n"


def test_rejected_flag_is_said_once_with_the_fix(git_comfy: Comfy) -> None:
    res = git_comfy.cli("launch", "comfyui", "--cpu", "--wait", "--port", "0", "--args", "--no-such-flag",
                        check=False)
    assert res.returncode == 1
    err = res.stderr
    assert "comfyui cannot start" in err and "rejected its arguments (unrecognized arguments: --no-such-flag)" in err
    assert "main.py: error: unrecognized arguments: --no-such-flag" in err  # its log line, shown
    log = (git_comfy.store / ".sdpanel" / "logs" / "webui-comfyui.log").read_text()
    assert log.count("--- sdpanel: starting comfyui") == 1  # not retried


def test_launch_without_wait_then_stop_and_the_same_port(git_comfy: Comfy) -> None:
    wanted = free_port()
    # A dash value after --args (ComfyUI refuses --lowvram beside --cpu, so another flag).
    out = git_comfy.cli("launch", "comfyui", "--cpu", "--port", str(wanted), "--args", "--disable-metadata").stdout
    assert "comfyui: starting" in out
    rec = git_comfy.record()
    assert "--disable-metadata" in rec["cmdline"]
    port = int(rec["port"])
    assert port == wanted
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # the CLI has exited; the WebUI keeps starting
        ps = json.loads(git_comfy.cli("ps", "--json").stdout)
        assert [p["alive"] for p in ps] == [True], ps
        if _listening(port):
            break
        time.sleep(1)
    launch(git_comfy, port=wanted)  # re-attaches: ready, same port
    assert git_comfy.port == port
    res = git_comfy.cli("generate", "a harbour", "--steps", "1", "--width", "64", "--height", "64", "--json")
    assert len(json.loads(res.stdout.strip().splitlines()[-1])["images"]) == 1
    assert "stopped" in git_comfy.cli("stop", "comfyui").stdout
    assert not _listening(port)  # `stop` returned once the port was free
    launch(git_comfy, port=wanted)
    assert git_comfy.port == port  # TIME_WAIT did not move it
