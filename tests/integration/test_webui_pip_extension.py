"""ComfyUI-Manager is a pip package now (issue 12 item 8): installed from the WebUI's own
manager_requirements.txt into the WebUI's Python and enabled with --enable-manager; a
ComfyUI without that file (0.3.64, the pinned one) skips it with the reason."""

from __future__ import annotations

import sys
from pathlib import Path

from sdpanel.webuis import install_extensions, launch_spec, webui_info
from tests.fixtures.webui_packages import build_tree


def _fake_python(tmp_path: Path) -> Path:
    """An interpreter stand-in that records its command line (pip is not run for real)."""
    py = tmp_path / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'argv.txt'}\n")
    py.chmod(0o755)
    return py


async def test_manager_is_a_pip_package_enabled_by_its_flag(tmp_path: Path) -> None:
    info = webui_info("comfyui")
    [manager] = info.extensions
    assert manager.pip == "comfyui-manager" and not manager.url  # no git clone from GitHub
    wd = build_tree(tmp_path / "ComfyUI")
    (wd / "manager_requirements.txt").write_text("comfyui-manager==4.0.2\n")
    py = _fake_python(tmp_path)
    [res] = await install_extensions(wd, info.extensions, extensions_dir=info.extensions_dir, python=str(py))
    assert res.ok and res.action == "installed", res
    argv = (tmp_path / "argv.txt").read_text()
    assert f"-m pip install --disable-pip-version-check -r {wd / 'manager_requirements.txt'}" in argv
    assert not (wd / "custom_nodes" / "ComfyUI-Manager").exists()
    spec = launch_spec("comfyui", wd, python=sys.executable)
    assert spec.argv.count("--enable-manager") == 1


async def test_a_comfyui_without_the_file_skips_it_with_the_reason(tmp_path: Path) -> None:
    info = webui_info("comfyui")
    wd = build_tree(tmp_path / "ComfyUI")
    py = _fake_python(tmp_path)
    [res] = await install_extensions(wd, info.extensions, extensions_dir=info.extensions_dir, python=str(py))
    assert res.ok and res.action == "skipped"
    assert "has no manager_requirements.txt" in res.notes[0] and "--enable-manager" in res.notes[0]
    assert not (tmp_path / "argv.txt").exists()
    assert "--enable-manager" not in launch_spec("comfyui", wd, python=sys.executable).argv
