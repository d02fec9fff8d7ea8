"""The promise, headless: ``papermill notebook/SDPanel.ipynb`` with a WebUI, two CivitAI
models, one Hugging Face file and one preset gives a working WebUI link, on every platform
profile of configs/platforms.json (markers and folders faked in a temporary root), against
local servers only."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from sdpanel.platforms import detect_platform
from tests.fixtures.stub_tunnels import install_stub_tools

from ._harness import (
    CELLS,
    MAX_NOTEBOOK_BYTES,
    Host,
    Run,
    Servers,
    five_cell_params,
    http_get,
    kernel_env,
    platform_names,
    run_notebook,
    webui_listing,
)

pytestmark = pytest.mark.slow

# A1111-family WebUIs link the store by directory symlinks, ComfyUI by extra_model_paths:
# half the hosts take each, so both ways are checked end to end.
FORGE_HOSTS = {"kaggle", "paperspace", "vast", "studiolab"}


def assert_five_cells_gave_a_link(run: Run, host: Host, servers: Servers, webui: str,
                                  planted: dict[str, str]) -> str:
    assert run.rc == 0, f"papermill failed:\n{run.stderr[-3000:]}"
    assert run.errors() == []
    assert all(run.ran(c) for c in CELLS), [c for c in CELLS if not run.ran(c)]
    setup = run.text("cell-setup")
    assert f"platform  {host.name}" in setup and str(host.storage) in setup
    # The models are in the store under their real names, complete, with no leftovers.
    for name, (kind, data) in servers.expected_files().items():
        path = host.storage / kind / name
        assert path.is_file() and path.read_bytes() == data, f"{kind}/{name} missing or wrong"
        assert not list(path.parent.glob("*.part")) and not list(path.parent.glob("*.aria2"))
        assert name in run.text("cell-download")
    assert "Downloads: 4 of 4 files downloaded and verified" in run.text("cell-download")
    # The printed link answers, and the WebUI behind it sees the store's models.
    link = run.link()
    assert link and link.startswith("http://127.0.0.1:"), run.text("cell-launch")
    status, body = http_get(link)
    assert status == 200 and b"stub" in body
    seen = webui_listing(link, webui)
    for name, (kind, _data) in servers.expected_files().items():
        if kind in seen:
            assert name in seen[kind], f"{webui} does not see {kind}/{name}: {seen}"
    # The WebUI went to the platform's work place, not the store.
    webui_dir = Path(json.loads((host.storage / ".sdpanel" / "pids" / f"webui-{webui}.json").read_text())["webui_dir"])
    assert webui_dir.is_relative_to(host.fs) and not webui_dir.is_relative_to(host.storage)
    # Small, and no secret in it: neither the planted tokens nor the servers' real ones.
    assert run.path.stat().st_size < MAX_NOTEBOOK_BYTES
    raw = run.path.read_text(encoding="utf-8")
    for secret in [*planted.values(), servers.civitai.token, servers.hf.token]:
        assert secret not in raw
    return link


@pytest.mark.parametrize("platform", platform_names())
def test_five_cells_give_a_working_link(platform: str, servers: Servers, make_host: Callable[[str], Host],
                                        tmp_path: Path, planted_tokens: dict[str, str]) -> None:
    host = make_host(platform)
    webui = "forge" if platform in FORGE_HOSTS else "comfyui"
    env = kernel_env(host, servers, tmp_path, webui)
    extra: dict[str, str] = {}
    if detect_platform({**env}).reach == "tunnel":
        # Colab and Kaggle: the user's browser cannot open 127.0.0.1 there, so a tunnel
        # (stub cloudflared on PATH, forwarding for real) is what they pick.
        env["PATH"] = f"{install_stub_tools(tmp_path / 'bin')}{os.pathsep}{env['PATH']}"
        extra["TUNNEL"] = "cloudflared"
    run = run_notebook(f"e2e-{platform}.ipynb", env, five_cell_params(servers, webui, **extra))
    assert_five_cells_gave_a_link(run, host, servers, webui, planted_tokens)
    if extra:
        tunnel = [ln for ln in run.text("cell-launch").splitlines() if ln.strip().startswith("cloudflared:")]
        assert tunnel and "https://" in tunnel[0] and "password" in tunnel[0], run.text("cell-launch")
    # The planted tokens were in the kernel's environment: reported as set, never shown.
    assert "set (environment)" in run.text("cell-settings")


def test_tunnel_host_without_a_tunnel_says_how_to_reach_it(servers: Servers, make_host: Callable[[str], Host],
                                                          tmp_path: Path) -> None:
    """On Colab the WebUI runs, but 127.0.0.1 is not the user's machine: the cell says so."""
    host = make_host("colab")
    run = run_notebook("e2e-colab-no-tunnel.ipynb", kernel_env(host, servers, tmp_path), five_cell_params(servers))
    assert run.rc == 0 and run.link(), run.stderr[-2000:]
    assert "your browser cannot open the local link; set TUNNEL" in run.text("cell-launch")
