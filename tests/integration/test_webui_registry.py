"""The registry's launch data is complete and consistent with the folder tables."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from sdpanel._configs import load_config
from sdpanel.webuis import NoWebUIPython, launch_spec, tunnel_table, webui_info, webuis


def test_registry_covers_every_webui_in_the_same_order() -> None:
    ids = webuis()
    assert ids[0] == "comfyui"
    assert set(ids) == set(load_config("webuis.json")["webuis"])
    for wid in ids:
        info = webui_info(wid)
        assert info.repository.startswith("https://github.com/")
        assert info.ref or info.commit
        assert info.api in ("comfyui", "a1111") and info.probe.startswith("/")
        assert "{python}" in info.launch and "{port}" in info.launch
        assert re.compile(info.ready_line)
    assert webui_info("ComfyUI").id == "comfyui"


def test_ready_lines_match_what_the_launchers_print() -> None:
    assert re.search(webui_info("comfyui").ready_line, "To see the GUI go to: http://127.0.0.1:8188")
    assert re.search(webui_info("forge").ready_line, "Running on local URL:  http://127.0.0.1:7860")


def test_launch_spec_argv(tmp_path: Path) -> None:
    # No venv and no webui_python setting: one sentence, never sdpanel's own interpreter.
    with pytest.raises(NoWebUIPython, match=r"has no venv .*`sdpanel install a1111 --force`.*webui_python"):
        launch_spec("a1111", tmp_path)
    spec = launch_spec("a1111", tmp_path, port=7861, gpu=2, args="--xformers --api", cpu=False,
                       python=sys.executable)
    assert spec.argv[:4] == [sys.executable, "launch.py", "--port", "{port}"]
    assert spec.argv.count("--api") == 1 and spec.argv[-1] == "--api" and "--xformers" in spec.argv
    assert spec.port == 7861 and spec.gpu == 2 and spec.probe == "/internal/ping"
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").symlink_to(sys.executable)
    cpu = launch_spec("comfyui", tmp_path, cpu=True)
    assert cpu.argv[0] == str(tmp_path / "venv" / "bin" / "python") and "--cpu" in cpu.argv
    assert cpu.port == 8188
    with pytest.raises(NoWebUIPython, match="neither a venv nor a Python interpreter"):
        launch_spec("comfyui", tmp_path, python=str(tmp_path / "nope"))
    # A venv folder or an interpreter both work for the setting.
    assert launch_spec("comfyui", tmp_path, python=str(tmp_path / "venv")).argv[0] == str(tmp_path / "venv" / "bin" / "python")


def test_launch_args_keep_options_whole(tmp_path: Path) -> None:
    """A user's --preview-method replaces the default one with its value (no stray 'auto'),
    and ComfyUI saves into the store's outputs (one copy of every image)."""
    spec = launch_spec("comfyui", tmp_path, python=sys.executable, args="--preview-method latent2rgb --lowvram",
                       outputs=tmp_path / "store" / "outputs")
    assert "auto" not in spec.argv and spec.argv[-3:] == ["--preview-method", "latent2rgb", "--lowvram"]
    i = spec.argv.index("--output-directory")
    assert spec.argv[i + 1] == str(tmp_path / "store" / "outputs")


def test_tunnel_regexes_and_auth() -> None:
    table = tunnel_table()
    assert set(table) == {"cloudflared", "ngrok", "zrok", "localtunnel", "pinggy"}
    for tool, spec in table.items():
        assert spec["auth"] in ("own", "proxy")
        # a login secret never goes on a command line
        assert not any("auth" in a.lower() and "{" in a for a in spec["argv"]), tool


def test_forge_neo_and_sd_ux_have_their_own_entries(tmp_path: Path) -> None:
    neo, classic, ux = webui_info("forge-neo"), webui_info("forge-classic"), webui_info("sd-ux")
    assert (neo.repository, neo.ref) == ("https://github.com/Haoming02/sd-webui-forge-classic", "neo")
    assert classic.ref == "classic" and classic.repository == neo.repository
    assert ux.repository == "https://github.com/anapnoe/stable-diffusion-webui-ux" and ux.api == "a1111"
    spec = launch_spec("forge-neo", tmp_path, port=7861, cpu=True, python=sys.executable)
    assert "--always-cpu" in spec.argv and "--api" in spec.argv
    assert "--use-cpu" in launch_spec("sd-ux", tmp_path, cpu=True, python=sys.executable).argv
