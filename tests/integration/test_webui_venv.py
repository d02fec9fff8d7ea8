"""The install's environment step (issue 12 item 3, issue 13 item 3): a host Python that
has torch is kept instead of installing torch again; requirements never name the torch
family; a WebUI that cannot start after the install stops it with one sentence and
leaves nothing installed; a package without a venv and no webui_python gets one built."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from sdpanel.runtime import EventBus
from sdpanel.storage import StorageRoot
from sdpanel.webuis import WebUIService, installed_info
from sdpanel.webuis._git import StepLog
from sdpanel.webuis._venv import VenvError, build_venv, filter_requirements
from tests.fixtures.range_server import RangeServer
from tests.fixtures.webui_packages import build_tree, make_zip


def test_requirements_lose_the_torch_family_only() -> None:
    text = "torch\ntorchvision>=0.1\ntorchaudio ; python_version>'3'\ntorchsde\nTorchVision==1\nnumpy\n-r other.txt\n"
    assert filter_requirements(text) == "torchsde\nnumpy\n-r other.txt\n"


def _fake_host_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The base Python 'has' torch 2.9.0, as Colab's does (a dist-info on its path)."""
    site = tmp_path / "host-site"
    (site / "torch").mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text("__version__ = '2.9.0'\n")
    info = site / "torch-2.9.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.9.0\n")
    # The stub WebUI needs aiohttp: the test interpreter's packages stand for the host's.
    own = [p for p in sys.path if p.endswith("site-packages")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), *own, os.environ.get("PYTHONPATH", "")]))


async def test_host_torch_is_kept_not_installed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_host_torch(tmp_path, monkeypatch)
    log_path = tmp_path / "install.log"
    report = await build_venv(tmp_path / "venv", log=StepLog(log_path, None, "t"),
                              torch_spec=["torch==2.14.1"], base_python=sys.executable)
    assert report.host_torch and report.torch == {"torch": "2.9.0"}
    assert "include-system-site-packages = true" in (tmp_path / "venv" / "pyvenv.cfg").read_text()
    log = log_path.read_text()
    assert "keeping the host's torch 2.9.0" in log and "installing torch" not in log
    assert (tmp_path / "venv" / "sdpanel-torch-constraints.txt").read_text() == "torch==2.9.0\n"


@pytest.fixture
def svc(tmp_path: Path):
    return WebUIService(StorageRoot.at(tmp_path / "store"), EventBus(), webuis_dir=tmp_path / "webuis")


async def test_a_webui_that_cannot_start_is_not_installed(svc: WebUIService, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = make_zip(build_tree(tmp_path / "tree"), tmp_path / "ComfyUI.zip")
    monkeypatch.setenv("STUB_WEBUI_IMPORT", "sdpanel_missing_mod")
    with RangeServer() as srv:
        srv.add_file(pkg.name, pkg)
        with pytest.raises(VenvError) as info:
            await svc.install("comfyui", source=srv.url(pkg.name), extensions=False)
    msg = str(info.value)
    assert msg.startswith("ComfyUI cannot start after the install (exit 1): its Python lacks the module "
                          "'sdpanel_missing_mod'")
    assert "ModuleNotFoundError" in msg  # its last log lines follow the sentence
    assert not svc.webui_dir("comfyui").exists() and installed_info(svc.webui_dir("comfyui")) is None


async def test_package_without_a_venv_gets_one_built(svc: WebUIService, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """No webui_python, no venv/ in the package: the install builds venv/ (the host torch
    is kept here, so no 3 GB download) and the WebUI runs on it, not on sdpanel's Python."""
    _fake_host_torch(tmp_path, monkeypatch)
    monkeypatch.delenv("SDPANEL_WEBUI_PYTHON", raising=False)
    pkg = make_zip(build_tree(tmp_path / "tree"), tmp_path / "ComfyUI.zip")
    with RangeServer() as srv:
        srv.add_file(pkg.name, pkg)
        res = await svc.install("comfyui", source=srv.url(pkg.name), extensions=False)
    wd = svc.webui_dir("comfyui")
    assert (wd / "venv" / "bin" / "python").exists()
    assert any(n.startswith("built venv/ with the host's torch torch 2.9.0") for n in res.notes), res.notes
    assert any("passed its start check" in n for n in res.notes)
    result = await svc.launch("comfyui", cpu=True, port=0)
    try:
        assert svc.manager.get("comfyui").spec.argv[0] == str(wd / "venv" / "bin" / "python")  # type: ignore[union-attr]
        assert result.state == "ready"
    finally:
        await svc.stop("comfyui")
